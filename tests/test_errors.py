"""One way to cut an error to the one line a user sees (pipeline.errors), for bad input and for failed tasks."""
from __future__ import annotations

from pipeline.errors import one_line, task_error


def test_one_line_joins_the_lines_and_collapses_whitespace():
    assert one_line(ValueError("size mismatch for\n   fc.weight:\tcopying a param")) == \
        "size mismatch for fc.weight: copying a param"
    assert one_line("already one line") == "already one line"


def test_an_error_without_a_message_is_named_by_its_type():
    assert one_line(KeyboardInterrupt()) == "KeyboardInterrupt"


def test_a_limit_cuts_the_line_and_says_so():
    cut = one_line("x" * 500, limit=200)
    assert len(cut) == 200 and cut.endswith("…")
    assert one_line("short", limit=200) == "short"


def test_a_failed_ray_task_is_its_own_exception_not_the_remote_traceback():
    from ray.exceptions import RayTaskError

    traceback = 'Traceback (most recent call last):\n  File "job.py", line 3, in fit\nValueError: lr=-1 is refused'
    raised = RayTaskError("train", traceback, ValueError("lr=-1 is refused")).as_instanceof_cause()
    assert task_error(raised) == "ValueError: lr=-1 is refused"
    assert task_error(RuntimeError("a node died\n(its worker)")) == "RuntimeError: a node died (its worker)"
