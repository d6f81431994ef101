"""How far a test accuracy can be trusted: the Wilson interval of mlcore/evaluation.py, in words on the run
page (a warning when there are too few test pictures) and in the API."""
import pytest
from django.urls import reverse

from api_app.models import ApiToken
from mlcore.evaluation import FEW_TEST_SPREAD, accuracy_in_words, wilson_interval
from tests.conftest import new_run
from training_app.models import TrainingRun


def test_the_wilson_interval_of_known_cases():
    # Checked against the roots of the quadratic (p̂ - p)² = z² p(1 - p) / n that defines it.
    assert wilson_interval(23, 25) == pytest.approx((0.7503, 0.9778), abs=1e-4)
    assert wilson_interval(549, 587) == pytest.approx((0.9124, 0.9525), abs=1e-4)
    low, high = wilson_interval(5, 5)  # all right: the interval still says it could be much less
    assert high == 1.0 and low == pytest.approx(0.5655, abs=1e-4)
    assert wilson_interval(0, 4)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_few_test_pictures_are_said_plainly():
    words = accuracy_in_words(23, 25)
    assert words.few
    assert words.text == ("Right on 23 of 25 test pictures (92%). With so few test pictures the true figure could be "
                          "anywhere from 75% to 98%; more test pictures would tell it more surely.")


def test_many_test_pictures_give_a_narrow_range():
    words = accuracy_in_words(549, 587)
    assert not words.few and words.high - words.low <= FEW_TEST_SPREAD
    assert words.text == ("Right on 549 of 587 test pictures (93.5%). On pictures like these, the true figure is "
                          "most likely between 91% and 96%.")
    assert accuracy_in_words(0, 0) is None
    assert accuracy_in_words(1, 1).text.startswith("Right on 1 of 1 test picture (100%).")


@pytest.mark.django_db
def test_the_run_page_and_the_api_warn_about_few_test_pictures(alice, client, shapes, user):
    run = new_run(shapes)
    # 9 test pictures, 8 right (the confusion matrix's diagonal).
    TrainingRun.objects.filter(id=run.id).update(status="succeeded", test_accuracy=8 / 9, test_count=9,
                                                 confusion=[[3, 0, 0], [1, 2, 0], [0, 0, 3]], class_names=list("abc"))
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert 'id="result-interval" class="message hint"' in page
    assert ("Right on 8 of 9 test pictures (89%). With so few test pictures the true figure could be anywhere "
            "from 56% to 99%") in page

    key = ApiToken.objects.create_for(user, "tests")[1]
    data = client.get(reverse("api:run", args=[run.pk]), HTTP_AUTHORIZATION=f"Bearer {key}").json()
    interval = data["test_accuracy_interval"]
    assert interval["few"] is True and interval["low"] == pytest.approx(0.565, abs=1e-3)
    assert interval["text"].startswith("Right on 8 of 9 test pictures")


@pytest.mark.django_db
def test_an_untested_run_has_no_interval(alice, client, shapes, user):
    run = new_run(shapes)
    page = alice.get(reverse("training:detail", args=[run.pk])).content.decode()
    assert 'id="result-interval"' not in page
    key = ApiToken.objects.create_for(user, "tests")[1]
    assert client.get(reverse("api:run", args=[run.pk]), HTTP_AUTHORIZATION=f"Bearer {key}").json()[
        "test_accuracy_interval"] is None
