import pytest


@pytest.fixture(autouse=True)
def daytime_store(db, shop):
    """No quiet hours: whether an intervention is queued must not depend on the hour."""
    shop.store.quiet_hours_start = None
    shop.store.quiet_hours_end = None
    shop.store.save()
    return shop


@pytest.fixture
def tasks_queued_not_run():
    """For tests that run the engine in several threads: tasks go to the broker instead
    of running inline. Celery's eager mode flips a process-wide "inside a task" flag that
    threads entering and leaving tasks at once can leave set, breaking later tests."""
    from config.celery import app

    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = True
