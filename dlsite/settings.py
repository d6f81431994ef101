"""Settings, all from environment variables.

With nothing set, everything lives in a local data folder (DATA_DIR, default
./var): an SQLite database in WAL mode, a filesystem message broker and the
uploaded media. DATABASE_URL and CELERY_BROKER_URL switch to PostgreSQL and
Redis.
"""
import hashlib
import importlib.util
import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp import constants as csp
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

# Off unless asked for: a wrong address or a crash must never show the technical pages to
# visitors. `make run` turns it on for local use, and says so.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY")
if not SECRET_KEY:
    # A key of this installation's own, made once and kept in the data folder (readable by its
    # owner only), so that a fresh clone runs as it is. Production sets SECRET_KEY (README).
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        # Written whole under another name, then linked into place: the processes of
        # `make run` start together, and none may read a half-written key or make a second one.
        draft = DATA_DIR / f"secret_key.{os.getpid()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(50))
        try:
            os.link(draft, key_file)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = [host.strip() for host in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if host.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

# HTTPS, for a site served over it (README, "Running in production"); all off by default so
# that http://127.0.0.1 keeps working.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("SECURE_PROXY_SSL_HEADER", False):  # behind a proxy that ends HTTPS and says so
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Error reports (and DEBUG's pages) hide the password in any setting that is a URL, such as
# CELERY_BROKER_URL; Django's own filter only hides settings named like KEY or PASSWORD.
DEFAULT_EXCEPTION_REPORTER_FILTER = "dlsite.reporting.PasswordHidingFilter"

# Who may create an account: "open" (anyone), "invite" (with a code from a staff member,
# made in the admin under "Invitations") or "closed" (nobody; staff add people in the admin).
SIGNUP_MODE = os.environ.get("SIGNUP_MODE", "open").strip().lower() or "open"
if SIGNUP_MODE not in ("open", "invite", "closed"):
    raise ImproperlyConfigured(f"SIGNUP_MODE must be open, invite or closed, not {SIGNUP_MODE!r}")

# /healthz answers from a cache for this many seconds: asking the workers takes a second.
HEALTHZ_CACHE_S = env_int("HEALTHZ_CACHE_S", 5)
# With this token (header X-Healthz-Token, or ?token=) a monitor sees the details that only
# staff see otherwise; empty means no token works.
HEALTHZ_TOKEN = os.environ.get("HEALTHZ_TOKEN", "")

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
    "housekeeping_app",
    "accounts_app",
    "api_app",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # the docs page's Swagger UI, served from local files
    "axes",
]

# The API for programs (api_app): a token per program, or the session of a person signed in; errors as
# JSON with a plain `message`; API_RATE requests per token and minute, counted in the "shared" cache.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api_app.auth.TokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["api_app.auth.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "api_app.negotiation.JsonWhateverTheAcceptHeader",
    "DEFAULT_SCHEMA_CLASS": "api_app.schema.AutoSchema",
    "EXCEPTION_HANDLER": "api_app.auth.plain_errors",
    "DEFAULT_PARSER_CLASSES": ["api_app.parsers.JSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
}
API_RATE = os.environ.get("API_RATE") or "1200/min"
# The largest JSON body the API reads (pictures in base64 included); larger is refused with a 413.
API_MAX_JSON_BYTES = env_int("API_MAX_JSON_BYTES", 32 * 1024**2)
# "shared": counts every web process must agree on (the API's requests per token): in Redis when the
# broker is Redis (every machine of the site shares it), else in files under DATA_DIR, which every
# process of one machine shares (dlsite/cache.py makes counting there atomic). "default" stays in memory.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if (os.environ.get("CELERY_BROKER_URL") or "").startswith(("redis://", "rediss://")):
    CACHES["shared"] = {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": os.environ["CELERY_BROKER_URL"],
                        # Another site on the same Redis database counts its own tokens.
                        "KEY_PREFIX": hashlib.sha256(SECRET_KEY.encode()).hexdigest()[:12]}
else:
    CACHES["shared"] = {"BACKEND": "dlsite.cache.FileCache", "LOCATION": str(DATA_DIR / "cache"),
                        "OPTIONS": {"MAX_ENTRIES": 10000}}
SPECTACULAR_SETTINGS = {
    "TITLE": "Image classifier API",
    "DESCRIPTION": "Train image classifiers and use them from your programs. Authenticate with "
                   "`Authorization: Bearer <token>`, a token made on the site's “API tokens” page.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Public, like the README: the schema says what the API takes and answers, nothing of anyone's
    # data, and a program or a client generator can read it before it has a token.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The site's own 404, 400 and 500 pages also with DEBUG on (`make run`); details go to the log.
    "dlsite.error_pages.OwnErrorPages",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]
# A form sent without its page's security token gets the site's page, in plain words.
CSRF_FAILURE_VIEW = "dlsite.views.csrf_failure"

# The pages load nothing from elsewhere and run no inline script or style (templates and
# static/js/site.js keep it so; tests/test_browser_csp.py walks the pages in Chromium and fails on
# any violation), so a script injected into a page cannot run. data: images are the previews and
# thumbnails the server sends as data URLs (mlcore/preview.py), and the empty favicon.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [csp.SELF],
        "img-src": [csp.SELF, "data:"],
        "object-src": [csp.NONE],
        "base-uri": [csp.SELF],
        "form-action": [csp.SELF],
        "frame-ancestors": [csp.NONE],
    },
}

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
                "dlsite.context_processors.signup",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        # Connections kept for a minute and checked before reuse: a new PostgreSQL connection per
        # request cost about 5 ms, a third of a one-picture API call (benchmarks/predict.py).
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The worker writes while the web reads: WAL, a busy timeout and
    # transactions that take the write lock up front (docs/architecture.md).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    }
    # Tests use a file, not memory, so that a worker process can share it.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # A process frozen inside a transaction (a paused VM, a stopped worker) would hold its row locks
    # for good, and the reaper's update of that run would wait behind them: the server ends such a
    # session after this many seconds, its transaction rolled back (our transactions last milliseconds).
    IDLE_IN_TRANSACTION_S = env_int("DATABASE_IDLE_IN_TRANSACTION_S", 60)
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = (
        f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_S * 1000}")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"

# Login throttling (django-axes): after AXES_FAILURE_LIMIT wrong passwords for one username
# from one address, that pair is locked out for AXES_COOLOFF_MINUTES, whatever password it
# tries next; a successful login clears the count.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_DISABLE_ACCESS_LOG = True  # keep the failures only, not a row for every successful login
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


def bucket_options(url: str) -> dict:
    """django-storages' S3 options from STORAGE_URL, `s3://bucket?endpoint_url=…&region_name=…`
    (any other S3Storage option may be given the same way), or from its usual AWS_* settings."""
    from urllib.parse import parse_qsl, urlsplit
    if url:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ImproperlyConfigured(f"STORAGE_URL must look like s3://bucket-name?endpoint_url=…, not {url!r}")
        options = {"bucket_name": parts.netloc, **dict(parse_qsl(parts.query))}
    else:
        options = {"bucket_name": os.environ["AWS_STORAGE_BUCKET_NAME"]}
        for option, name in (("endpoint_url", "AWS_S3_ENDPOINT_URL"), ("region_name", "AWS_S3_REGION_NAME")):
            if os.environ.get(name):
                options[option] = os.environ[name]
    location = options.pop("location", "").strip("/")
    return {
        # Private objects, read through the site (which checks who owns them) or short-lived signed
        # URLs; never public ones.
        "default_acl": None, "querystring_auth": True, "querystring_expire": 300,
        # Django's FileSystemStorage never writes over a file (it picks another name); the same here,
        # or two uploads called the same would share one object. dlsite/storage.py replaces on purpose.
        "file_overwrite": False,
        # A kept file being read is held in memory up to this size, and in a temporary file beyond it
        # (django-storages' default, 0, holds any file whole in memory: a model or a zip too).
        "max_memory_size": 8 * 1024 * 1024,
        "location": location,
        **options,
    }


# Kept files (images, uploads, models, exports, classified pictures, packs in the bucket, pretrained
# weights) go through Django's storage API (dlsite/storage.py): the local folder MEDIA_ROOT by
# default; an S3-compatible bucket (AWS S3, MinIO, Ceph, R2…) when STORAGE_URL or
# AWS_STORAGE_BUCKET_NAME is set, which is what lets workers on other machines share them.
STORAGE_URL = os.environ.get("STORAGE_URL", "").strip()
STORAGE_IS_LOCAL = not (STORAGE_URL or os.environ.get("AWS_STORAGE_BUCKET_NAME", "").strip())
if not STORAGE_IS_LOCAL:
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": bucket_options(STORAGE_URL)}

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
# The predict page decodes in the web process: JPEGs at a reduced scale (any size up to
# MAX_IMAGE_PIXELS), other formats only up to MAX_PREDICT_PIXELS (16 M: a 4,000 x 4,000 PNG is
# 48 MB decoded), and no file over MAX_PREDICT_FILE_BYTES is read.
MAX_PREDICT_PIXELS = env_int("MAX_PREDICT_PIXELS", 16_000_000)
MAX_PREDICT_FILE_BYTES = env_int("MAX_PREDICT_FILE_BYTES", 20 * 1024 * 1024)

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
# The reaper (jobs.reap) is light work for the default queue; every training.* task trains.
CELERY_TASK_ROUTES = {"jobs.*": {"queue": "default"}, "training.*": {"queue": "training"},
                      "pretrained.*": {"queue": "default"}, "housekeeping.*": {"queue": "default"},
                      "predict.*": {"queue": "default"}, "exports.*": {"queue": "default"},
                      "trees.*": {"queue": "default"}}
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
# TensorFlow's threads in a training run (mlcore/devices.py); 0 means one per CPU core but one from
# 4 cores up, so that the web server keeps a core for the pages while a run trains. With 2 or 3
# cores a run takes them all (one fewer made MNIST training about half as fast) and the workers'
# lower priority (nice 10, supervisord.conf) is what gives the pages the CPU when they need it.
CORES = os.cpu_count() or 1
TRAINING_THREADS = env_int("TRAINING_THREADS", 0) or (CORES - 1 if CORES >= 4 else CORES)

# Packed copies of dataset versions (uint8 arrays at a run's input size), built once and
# shared by runs; a cache local to the training worker, safe to delete.
PACK_DIR = Path(os.environ.get("PACK_DIR") or DATA_DIR / "packs").resolve()
# This host's copies of files kept in a bucket (models, packs, pretrained weights, a zip being read):
# fetched when first needed, at most LOCAL_CACHE_MAX_GB, the least recently used removed first
# (dlsite/storage.py). Unused with the local folder, where every file is read where it is kept.
LOCAL_CACHE_DIR = Path(os.environ.get("LOCAL_CACHE_DIR") or DATA_DIR / "local-cache").resolve()
LOCAL_CACHE_MAX_GB = float(os.environ.get("LOCAL_CACHE_MAX_GB") or 20)

# A worker writes a heartbeat for its job (any kind: dlsite/jobs.py) every HEARTBEAT_INTERVAL_S. A
# job whose heartbeat is older than HEARTBEAT_STALE_S lost its worker (killed, out of memory, host
# restarted): every REAPER_INTERVAL_S the beat process has it queued again (a run continues from
# its last finished epoch), up to MAX_*_ATTEMPTS attempts in all. The queue page reads the same limit.
HEARTBEAT_INTERVAL_S = env_int("HEARTBEAT_INTERVAL_S", 10)
HEARTBEAT_STALE_S = env_int("HEARTBEAT_STALE_S", 90)
REAPER_INTERVAL_S = env_int("REAPER_INTERVAL_S", 30)
MAX_TRAINING_ATTEMPTS = env_int("MAX_TRAINING_ATTEMPTS", 3)
# Uploads have the same heartbeat and reaper: an ingestion whose worker died is read again,
# up to MAX_INGEST_ATTEMPTS attempts, then fails with a message and a Retry button.
MAX_INGEST_ATTEMPTS = env_int("MAX_INGEST_ATTEMPTS", 3)
# Classifications of many pictures too (predict_app): a second attempt goes on where the first stopped.
MAX_PREDICT_ATTEMPTS = env_int("MAX_PREDICT_ATTEMPTS", 3)
# And every other job (making an export, downloading pretrained weights).
MAX_JOB_ATTEMPTS = env_int("MAX_JOB_ATTEMPTS", 3)
# A queued job that no worker took within UNCLAIMED_AFTER_S, while its queue's workers did nothing
# else, lost its message (another site's worker on the same broker, a killed worker on the
# filesystem broker): the reaper sends it again, and fails it after the kind's last attempt.
UNCLAIMED_AFTER_S = env_int("UNCLAIMED_AFTER_S", 300)
CELERY_BEAT_SCHEDULE = {"reap-jobs": {"task": "jobs.reap", "schedule": float(REAPER_INTERVAL_S)}}
# Clean-up (housekeeping_app/cleanup.py, `manage.py cleanup`): every CLEANUP_INTERVAL_S the files no
# row refers to go once older than CLEANUP_GRACE_S (an upload writes files before their rows), with
# zips already read, models of deleted runs, and the least recently used packs beyond
# PACK_CACHE_MAX_GB. A folder being received that gets no files for UPLOAD_ABANDON_S is given up.
CLEANUP_INTERVAL_S = env_int("CLEANUP_INTERVAL_S", 3600)
CLEANUP_GRACE_S = env_int("CLEANUP_GRACE_S", 24 * 3600)
# Pictures a model was not sure about, kept with its owner's consent (predict_app.models.UnsurePicture),
# are removed by the clean-up after this many days.
UNSURE_KEEP_DAYS = env_int("UNSURE_KEEP_DAYS", 30)
UPLOAD_ABANDON_S = env_int("UPLOAD_ABANDON_S", 2 * 24 * 3600)
PACK_CACHE_MAX_GB = float(os.environ.get("PACK_CACHE_MAX_GB") or 20)
CELERY_BEAT_SCHEDULE["cleanup"] = {"task": "housekeeping.cleanup", "schedule": float(CLEANUP_INTERVAL_S)}
# Per-person limits (dlsite/quotas.py); 0 means no limit. Bytes count stored images
# (with thumbnails) and uploads; runs count those waiting or training.
QUOTA_IMAGES = env_int("QUOTA_IMAGES", 0)
QUOTA_BYTES = env_int("QUOTA_BYTES", 0)
QUOTA_QUEUED_RUNS = env_int("QUOTA_QUEUED_RUNS", 3)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# The control socket of supervisord when `make run` runs the site under it (supervisord.conf):
# the queue page asks it how each process is doing. Absent otherwise, and then nothing is shown.
SUPERVISOR_SOCKET = Path(os.environ.get("SUPERVISOR_SOCKET") or DATA_DIR / "supervisor.sock")

# The folder with the pretrained weights files of the transfer-learning networks (README,
# "Pretrained weights"): where `manage.py fetch_pretrained` and the staff page "Pretrained networks"
# put them, and where training loads them from. A network whose file is not there is unavailable.
PRETRAINED_WEIGHTS_DIR = str(Path(os.environ.get("PRETRAINED_WEIGHTS_DIR", "").strip()
                                  or DATA_DIR / "weights").resolve())
# Where those files are downloaded from: empty means Keras' own storage (mlcore/pretrained.py); a
# mirror with the same paths can be named instead.
PRETRAINED_WEIGHTS_URL = os.environ.get("PRETRAINED_WEIGHTS_URL", "").strip()
