"""Settings, all from environment variables.

With nothing set, everything lives in a local data folder (DATA_DIR, default
./var): an SQLite database in WAL mode, a filesystem message broker and the
uploaded media. DATABASE_URL and CELERY_BROKER_URL switch to PostgreSQL and
Redis.
"""
import importlib.util
import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


DATA_DIR = Path(os.environ.get("DATA_DIR") or BASE_DIR / "var").resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    # A key of this installation's own, made once and kept in the data folder.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = [host.strip() for host in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if host.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "datasets_app",
    "training_app",
    "predict_app",
    "pretrained_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dlsite.urls"
WSGI_APPLICATION = "dlsite.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker writes while the web reads: WAL, a busy timeout and
    # transactions that take the write lock up front (GUIDE.md).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    # Tests use a file, not memory, so that a worker process can share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "datasets:list"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # WhiteNoise warns about a missing folder
# Plotly's JavaScript comes from the plotly package itself: no CDN, works offline.
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("plotly", Path(importlib.util.find_spec("plotly").submodule_search_locations[0]) / "package_data"),
]
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or DATA_DIR / "media").resolve()
# No MEDIA_URL is served: images go through views that check who owns them.
MODELS_DIR = MEDIA_ROOT / "models"

# Uploads: a zip goes to a temporary file, never into memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 2 * 1024**3)
MAX_ZIP_ENTRIES = env_int("MAX_ZIP_ENTRIES", 200_000)
MAX_ZIP_UNPACKED_BYTES = env_int("MAX_ZIP_UNPACKED_BYTES", 4 * 1024**3)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 40_000_000)
MAX_PREDICT_FILES = env_int("MAX_PREDICT_FILES", 20)

# Celery: the database row of a job is the truth; messages carry only ids.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
BROKER_DIR = DATA_DIR / "broker"
TRAINING_TIME_LIMIT_S = env_int("TRAINING_TIME_LIMIT_S", 6 * 3600)
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Redis redelivers an unacknowledged task after the visibility timeout; it
    # must outlast the longest training run, or a run would start twice.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": TRAINING_TIME_LIMIT_S + 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_DEFAULT_QUEUE = "default"
# The reaper is light work for the default queue; every other training.* task trains.
CELERY_TASK_ROUTES = {"training.reap_stale_runs": {"queue": "default"}, "training.*": {"queue": "training"},
                      "pretrained.*": {"queue": "default"}}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ANNOTATIONS = {
    "training.train_run": {"time_limit": TRAINING_TIME_LIMIT_S, "soft_time_limit": TRAINING_TIME_LIMIT_S - 60},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
# Processes that examine (decode, hash, store) the files of a large upload at once;
# 0 means one per CPU core.
INGEST_PROCESSES = env_int("INGEST_PROCESSES", 0) or os.cpu_count() or 1

# Packed copies of dataset versions (uint8 arrays at a run's input size), built once and
# shared by runs; a cache local to the training worker, safe to delete.
PACK_DIR = Path(os.environ.get("PACK_DIR") or DATA_DIR / "packs").resolve()

# A training process writes a heartbeat every HEARTBEAT_INTERVAL_S. A run whose heartbeat is older
# than HEARTBEAT_STALE_S lost its worker (killed, out of memory, host restarted): every
# REAPER_INTERVAL_S the beat process has it queued again, to continue from its last finished
# epoch, up to MAX_TRAINING_ATTEMPTS attempts in all.
HEARTBEAT_INTERVAL_S = env_int("HEARTBEAT_INTERVAL_S", 10)
HEARTBEAT_STALE_S = env_int("HEARTBEAT_STALE_S", 90)
REAPER_INTERVAL_S = env_int("REAPER_INTERVAL_S", 30)
MAX_TRAINING_ATTEMPTS = env_int("MAX_TRAINING_ATTEMPTS", 3)
CELERY_BEAT_SCHEDULE = {
    "reap-stale-runs": {"task": "training.reap_stale_runs", "schedule": float(REAPER_INTERVAL_S)},
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# The folder with the pretrained weights files of the transfer-learning networks (README,
# "Pretrained weights"): where `manage.py fetch_pretrained` and the staff page "Pretrained networks"
# put them, and where training loads them from. A network whose file is not there is unavailable.
PRETRAINED_WEIGHTS_DIR = str(Path(os.environ.get("PRETRAINED_WEIGHTS_DIR", "").strip()
                                  or DATA_DIR / "weights").resolve())
# Where those files are downloaded from: empty means Keras' own storage (mlcore/pretrained.py); a
# mirror with the same paths can be named instead.
PRETRAINED_WEIGHTS_URL = os.environ.get("PRETRAINED_WEIGHTS_URL", "").strip()
