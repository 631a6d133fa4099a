"""Every outcome of creating a transfer, by name (TigerBeetle's vocabulary where it has one)."""

import enum


class TransferResult(enum.StrEnum):
    OK = "ok"
    # The same id with the same fields was created before: nothing happens again.
    EXISTS = "exists"
    EXISTS_WITH_DIFFERENT_FIELDS = "exists_with_different_fields"

    LINKED_EVENT_FAILED = "linked_event_failed"
    LINKED_EVENT_CHAIN_OPEN = "linked_event_chain_open"
    ID_MUST_NOT_BE_EMPTY = "id_must_not_be_empty"
    ID_TOO_LONG = "id_too_long"
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = "flags_are_mutually_exclusive"
    AMOUNT_MUST_BE_POSITIVE = "amount_must_be_positive"
    ACCOUNTS_MUST_BE_DIFFERENT = "accounts_must_be_different"
    DEBIT_ACCOUNT_NOT_FOUND = "debit_account_not_found"
    CREDIT_ACCOUNT_NOT_FOUND = "credit_account_not_found"
    PENDING_ID_MUST_BE_SET = "pending_id_must_be_set"
    PENDING_ID_MUST_NOT_BE_SET = "pending_id_must_not_be_set"
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = "timeout_reserved_for_pending_transfer"
    PENDING_TRANSFER_NOT_FOUND = "pending_transfer_not_found"
    PENDING_TRANSFER_NOT_PENDING = "pending_transfer_not_pending"
    PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS = "pending_transfer_has_different_accounts"
    PENDING_TRANSFER_ALREADY_POSTED = "pending_transfer_already_posted"
    PENDING_TRANSFER_ALREADY_VOIDED = "pending_transfer_already_voided"
    PENDING_TRANSFER_EXPIRED = "pending_transfer_expired"
    EXCEEDS_PENDING_TRANSFER_AMOUNT = "exceeds_pending_transfer_amount"
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = "pending_transfer_has_different_amount"
    # The debit account would spend more than it holds (insufficient funds).
    EXCEEDS_CREDITS = "exceeds_credits"
    # The credit account would receive more than its debits allow (e.g. the trust account).
    EXCEEDS_DEBITS = "exceeds_debits"
    # A balance would pass the 64-bit limit of its column.
    OVERFLOWS = "overflows"

    @property
    def succeeded(self) -> bool:
        return self in (TransferResult.OK, TransferResult.EXISTS)
