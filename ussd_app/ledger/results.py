"""Every outcome of creating a transfer, by name (TigerBeetle's vocabulary where it has one).

The members are in TigerBeetle's order of precedence: when several apply, the first listed
is the answer (docs/ledger.md lists where Tuma's names and order differ).
"""

import enum


class TransferResult(enum.StrEnum):
    OK = "ok"  # TigerBeetle's `created`

    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_MUST_NOT_BE_EMPTY = "id_must_not_be_empty"
    ID_TOO_LONG = "id_too_long"
    # The same id with other fields was created before (TigerBeetle names the field).
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"
    # The same id with the same fields was created before: nothing happens again.
    EXISTS = "exists"
    # (An id that failed before answers its first result again: TigerBeetle's id_already_failed.)
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    PENDING_ID_MUST_NOT_BE_SET = "pending_id_must_not_be_set"
    PENDING_ID_MUST_BE_SET = "pending_id_must_be_set"
    PENDING_ID_MUST_BE_DIFFERENT = "pending_id_must_be_different"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    # Zero (or less): refused, as TigerBeetle did before 0.16 (amount_must_not_be_zero). A void's
    # amount may be 0, meaning the whole hold.
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS = "pending_transfer_has_different_accounts"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    # Its timeout has passed: voided by the expiry job, or about to be.
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    # A balance would pass the 64-bit limit of its column (2**63 - 1): the amount added to
    # debits_pending, credits_pending (pending transfers), debits_posted, credits_posted (every
    # transfer, so a hold can always be posted), or to pending + posted on either side.
    OVERFLOWS_DEBITS_PENDING = "overflows_debits_pending"
    OVERFLOWS_CREDITS_PENDING = "overflows_credits_pending"
    OVERFLOWS_DEBITS_POSTED = "overflows_debits_posted"
    OVERFLOWS_CREDITS_POSTED = "overflows_credits_posted"
    OVERFLOWS_DEBITS = "overflows_debits"
    OVERFLOWS_CREDITS = "overflows_credits"
    # The timeout does not fit its column (2**31 - 1 seconds), or its expiry time would not.
    OVERFLOWS_TIMEOUT = "overflows_timeout"
    # The debit account would spend more than it holds (insufficient funds).
    EXCEEDS_CREDITS = "exceeds_credits"
    # The credit account would receive more than its debits allow (e.g. the trust account).
    EXCEEDS_DEBITS = "exceeds_debits"

    # Before the overflows_* names: kept so that rejections recorded then can still be read.
    OVERFLOWS = "overflows"

    @property
    def succeeded(self) -> bool:
        return self in (TransferResult.OK, TransferResult.EXISTS)
