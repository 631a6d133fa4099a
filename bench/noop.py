"""The job that does nothing: the baseline cost of one rq job."""


def noop():
    return None
