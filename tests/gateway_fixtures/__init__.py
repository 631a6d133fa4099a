"""Request and answer fixtures of each USSD gateway, taken from its published documentation
(each module names its source). ``REQUESTS``: documented requests with what the adapter must
read from them; ``ANSWER``: the fields of the gateway's documented answer and their types."""
