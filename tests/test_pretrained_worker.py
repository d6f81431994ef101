"""The "Download" button of the staff page, through a real worker on the queue "default".

The worker is another process with the real catalogue, so the local server's stand-in cannot pass
MobileNetV2's real checks: the download must be refused there, in plain words, with nothing kept.
That it is shows the message travelled to the right queue and the worker ran the task on the row."""
import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from pretrained_app.models import WeightsDownload
from tests.conftest import PASSWORD, wait_for
from tests.test_pretrained import FileServer, stand_in

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
OWN_WORKERS = True  # they start after weights_env has set their environment (tests/conftest.py)


@pytest.fixture(scope="module", autouse=True)
def weights_env(tmp_path_factory):
    """Before the workers start (they take their settings from the environment): the weights folder
    and a local server for the downloads."""
    server = FileServer()
    server.serve("mobilenetv2", stand_in(3, 50_000))
    server.thread.start()
    folder = tmp_path_factory.mktemp("worker-weights")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PRETRAINED_WEIGHTS_DIR", str(folder))
        patch.setenv("PRETRAINED_WEIGHTS_URL", server.url)
        yield folder
    server.server.shutdown()
    server.server.server_close()


def test_the_download_runs_on_a_default_worker(weights_env, celery_workers, client, settings):
    settings.PRETRAINED_WEIGHTS_DIR = str(weights_env)
    staff = get_user_model().objects.create_user("sam", password=PASSWORD, is_staff=True)
    client.force_login(staff)
    assert client.post(reverse("pretrained:download", args=["mobilenetv2"])).status_code == 302

    download = wait_for(lambda: WeightsDownload.objects.filter(status__in=["done", "failed"]).first(),
                        timeout=60, what="the download")
    assert download.status == "failed", celery_workers.log("default")
    assert "has 50,000 bytes, but MobileNetV2's weights file has 9,406,464" in download.error
    assert download.bytes_done == 50_000
    assert list(weights_env.iterdir()) == []
    assert "pretrained.download_weights[" in celery_workers.log("default")
