"""Sending the outbox through Africa's Talking: claim, hand over, record, in lanes, one per number.

The protocol, and why:

1. **Claim** (one committed transaction): for up to ``SMS_CLAIM_BATCH`` numbers with due rows
   (in the order of their oldest due row), take that number's *lane*: its unfinished rows
   (``pending`` or ``sending``) in id order, up to ``SMS_LANE_DEPTH`` of them, while each is due
   (``pending`` and due, or ``sending`` for longer than the claim timeout). A lane stops at the
   first row that is not: a row in its retry backoff holds back every later message to its
   number, and a number one of whose rows another sender holds (``sending``, not timed out) gets
   no lane at all. For each row taken: ``sending``, one more ``attempts``, ``claimed_at`` and a
   fresh ``claim_token``. A ``sending`` row with no attempt left is marked ``failed`` instead
   (final, so the lane goes on past it). On PostgreSQL the lane's rows are locked ``FOR UPDATE
   SKIP LOCKED`` and a lane is only the locked prefix of its number's rows: two senders that
   pick the same number at once cannot both take it (the second sees the first's rows locked,
   or, once committed, ``sending``). SQLite serialises the claim (``BEGIN IMMEDIATE``).
2. **Hand over** with no database transaction open: the lanes side by side, one thread each;
   within a lane one ``SMS.send`` after another, each only once the one before was answered
   (accepted, or refused for good). So a number's messages reach Africa's Talking in the order
   they were written (the balances in a run of receipts read in order), a merchant paid 5,000
   times gets them at the gateway's pace instead of one per claim, and a busy number fills
   one lane and holds nobody else's receipts back: the job claims new lanes beside those still
   running (when half the lanes are free and more may be due, and every ``CLAIM_POLL_SECONDS``
   while one runs). More may be due after a claim that took every lane it asked for, after a
   lane as deep as allowed ends (its number may have more) and after rows are handed back; a
   claim that found fewer lanes than it asked for saw every due number, and rows written after
   it ring the doorbell for a job of their own, so ordinary receipts cost one claim a job.
   A lane as deep as allowed is **extended** before it runs dry (``extend_lane``: when it has
   a quarter of ``SMS_LANE_DEPTH``, at most ``SMS_CLAIM_BATCH``, rows left to hand over, its
   number's next due rows after its last are claimed, on the same terms as a claim, and added
   to it): a busy till's lane goes on at the gateway's pace instead of stopping every
   ``SMS_LANE_DEPTH`` rows while its number is claimed again. A lane holds at most
   ``SMS_LANE_DEPTH`` rows not yet handed over; rows claimed for a lane that has meanwhile
   ended or stopped go back (``release``'s terms: pending, their attempt undone). A lane is not
   extended while a row of its number with a lower id than its last is ``pending`` (an
   operator's retry of an older receipt, a row committed late, or one in its backoff after
   another sender's transient failure): it ends with what it holds, and its number is claimed
   again from that row, which goes next (or holds the later ones back in its backoff).
   While its lanes run, the job **renews** their claims (``renew``: ``claimed_at`` moved on
   where the claim token still holds) every half of what the claim timeout leaves beyond the
   SDK's timeouts; a lane whose claims were not all renewed is not held any longer.
   A lane stops early, handing back (``release``) its rows not yet
   handed over, with their attempt undone: at a transient failure (the number's next messages
   must wait behind the one that failed, which is retried with backoff), when the job pauses,
   or when less than the SDK's timeouts is left of its hold (claimed or last renewed, plus the
   claim timeout). The SDK's ``SMSService.send`` only reads the
   service's settings, so the threads share one client; each lane's calls go over one
   kept-alive connection of its own (``SmsClient.kept_alive``, ``africas_talking.py``), handed
   on to the job's next lane when it ends and closed once the job's lanes are done.
3. **Record** (committed transactions, in the job's own thread, while the lanes go on) each
   answer against its claim only (``claim_token`` matches and the row is still ``sending``):
   ``sent`` with Africa's Talking's messageId, status and cost; ``pending`` with a backoff for a
   transient failure; ``failed`` with the reason for a permanent one or when the attempts are
   used up. A row whose claim was lost is logged and left to the sender that holds it now.
   Answers are recorded in groups (what arrives within ``GATHER_SECONDS`` of the first, or
   while the last group was being committed), so a lane's calls and the commits overlap. On
   PostgreSQL the job's claims, records, releases and renewals go over one connection held for
   the job (not one checked out, and pinged, per commit); a transaction that finds it lost is
   done again on a new one (at once, then while the database takes no connections, for up to
   the claim timeout), which each of them allows (``_again_if_lost``).

A failure that is about the gateway or our account rather than one number (network error,
timeout, non-2xx answer such as a 5xx or a 429 rate limit, 405 InsufficientBalance, 402
InvalidSenderId: ``Answer.pause``) costs its row no attempt (``pending`` again, its attempt
undone, the reason kept, due at once) and pauses the job: every lane stops after the call it
has in flight, each answer is recorded, the rows not yet handed over are released (not lost, no
attempt spent) and no lane is claimed again. It also opens the gateway's circuit
(``circuit.py``): no sender claims anything for ``SMS_GATEWAY_PAUSE_SECONDS``; then one sender
probes with one row, and only once the gateway answers it do the senders go on (each failed
probe doubles the pause, up to ``SMS_GATEWAY_PAUSE_MAX_SECONDS``). So an outage, however long,
gives no receipt up; the periodic job wakes the sender, and each job in the pause is one Redis
read. The rows go back in order (a number's row that failed first), so they keep their order
when the gateway is back. Per-message refusals (403/404/406/409 at once, other per-recipient
codes after ``SMS_MAX_ATTEMPTS``) still end ``failed``, and open no circuit; so does a
"poison" message's own HTTP-level failure once the probe that closed the circuit made its
number a suspect (``circuit.py``, ``_Lanes.suspects``).

So a row is handed to the gateway at most once per attempt, and a row recorded as sent is
never handed over again. A lane hands a row over only while it holds one of
``SMS_CLAIM_BATCH`` places, each given back when that row's answer is committed: at most
``SMS_CLAIM_BATCH`` rows of a sender are ever handed over and not yet recorded, as many as one
batch of side-by-side calls before lanes. A sender killed between 2 and 3 (or whose record
commit fails) leaves its lanes ``sending`` and renews them no more; once
``SMS_CLAIM_TIMEOUT_SECONDS`` (20; kept above the SDK's timeouts plus 5 s) pass since their last
claim or renewal, those rows are claimed and sent again, in order. A live sender has always
given up on its calls by then: a lane hands nothing over once less than the SDK's timeouts are
left of its hold, and its hold only moves on with a renewal that found every one of its claims
still its own (a renewal's time is read before its statement, so the sender's view of its hold
is never later than the database's). Those handed over but unrecorded are the one place a message
can reach a phone twice: Africa's Talking's SMS API takes no idempotency key, and losing a
receipt is worse than repeating one; the rest of a dead sender's lanes were never handed over
and go once. ``SMS_CLAIM_BATCH`` bounds how many rows one dead sender can leave to be repeated,
each in that window for about one HTTP call and one commit. The price of lanes is in the delay,
not the count: a dead sender's lanes (up to ``SMS_BATCH_SIZE`` rows, the job's limit) wait for
the claim timeout before anyone sends them, where a batch left at most ``SMS_CLAIM_BATCH``;
renewal is what lets that timeout be 20 s, not a minute (it needs only to outlast the SDK's
timeouts, not a lane's whole run).

Where each part lives: ``gateway`` (one hand-over and what its answer means), ``claims``
(which rows are due; claiming lanes and extending them), ``lanes`` (a lane's rows handed over
in order by its thread), ``records`` (answers, releases and renewals written against their
claims), ``connection`` (the job's one connection, and a transaction done again when it was
lost), ``job`` (``send_due``: the job's own thread, and ``announce``); the gateway's circuit
is ``sms/circuit.py``. The names other modules use are importable from here.
"""

from .claims import Claim, claim, claim_lanes, claim_timeout, count_due, extend_lane
from .gateway import ACCEPTED, ACCOUNT_WIDE, PERMANENT, Answer, Outcome, hand_over, read_answer
from .job import DOORBELL_KEY, announce, send_due
from .lanes import _Lane, _Lanes
from .records import backoff, record, record_batch, renew

__all__ = [
    "ACCEPTED",
    "ACCOUNT_WIDE",
    "DOORBELL_KEY",
    "PERMANENT",
    "Answer",
    "Claim",
    "Outcome",
    "_Lane",
    "_Lanes",
    "announce",
    "backoff",
    "claim",
    "claim_lanes",
    "claim_timeout",
    "count_due",
    "extend_lane",
    "hand_over",
    "read_answer",
    "record",
    "record_batch",
    "renew",
    "send_due",
]
