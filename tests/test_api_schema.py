"""The API against its own schema: Schemathesis sends requests generated from /api/v1/schema/ to every
operation, with a token, in this process (the WSGI app), and checks that none answers a server error
and that every answer (its status, its content type, its fields) is one the schema declares."""
import hypothesis
import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections

from api_app.models import ApiToken
from dlsite.wsgi import application


@pytest.fixture
def api_schema(db):
    # As Django's test client does: a request's end closes the database connection, and with it the
    # transaction this test runs in.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture
def site(shapes_model, settings):
    """A token, and the numbers of things that exist, so that generated requests reach the views' work
    and not only their 404."""
    settings.API_RATE = "1000000/min"
    key = ApiToken.objects.create_for(shapes_model.owner, "schemathesis")[1]
    return key, {"run_pk": shapes_model.id, "dataset_pk": shapes_model.dataset_id}


@schema.parametrize()
@hypothesis.settings(max_examples=12, deadline=None, derandomize=True, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_answers_as_its_schema_says(case, site):
    key, numbers = site
    for name, number in numbers.items():
        if isinstance((case.path_parameters or {}).get(name), int):
            case.path_parameters[name] = number
    # Left out: "a request the schema allows is accepted". The schema cannot say that a file must be
    # a zip of pictures, or a network one that can be built; such requests are refused with a 400.
    case.call_and_validate(headers={"Authorization": f"Bearer {key}"},
                           excluded_checks=[schemathesis.checks.positive_data_acceptance])
