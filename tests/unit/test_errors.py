from uuid import uuid4

import cqrskit
from cqrskit import errors


def test_every_error_is_either_transient_or_permanent() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        if not isinstance(cls, type) or not issubclass(cls, Exception):
            continue
        if cls in (errors.CqrskitError, errors.TransientError, errors.PermanentError):
            continue
        assert issubclass(cls, errors.TransientError) != issubclass(cls, errors.PermanentError), (
            name
        )
        assert cls.transient == issubclass(cls, errors.TransientError), name


def test_errors_carry_what_they_are_about() -> None:
    aggregate_id = uuid4()
    not_found = cqrskit.AggregateNotFound(aggregate_id, "Order")
    assert str(aggregate_id) in str(not_found)
    assert not_found.aggregate_id == aggregate_id
    down = cqrskit.ServiceUnavailable("Kafka", "h:1", "refused", "CQRSKIT_KAFKA_BOOTSTRAP")
    assert "h:1" in str(down)
    assert "CQRSKIT_KAFKA_BOOTSTRAP" in str(down)
    assert down.transient
    rejected = cqrskit.CommandRejected(
        "PlaceOrder", [cqrskit.FieldError("lines.0.quantity", "must be positive")]
    )
    assert "lines.0.quantity: must be positive" in str(rejected)
    assert not rejected.transient
