"""Starting to read a zip into a dataset: the one way the pages, the sample digits and the API do it."""
from .models import Upload
from .sources import fit_upload_name, zip_storage_name
from .tasks import ingest


def start_zip_upload(dataset, name, fileobj, user) -> Upload:
    """Store the zip (checked already) as an upload of `dataset` and queue its reading, once committed."""
    upload = Upload(dataset=dataset, original_name=fit_upload_name(name), created_by=user)
    upload.file.save(zip_storage_name(name), fileobj, save=False)
    upload.save()
    ingest.delay_on_commit(upload.id)
    return upload
