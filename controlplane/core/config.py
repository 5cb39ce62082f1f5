"""Default settings; overridden by instance/settings.py and CONTROLPLANE_* environment variables."""
from __future__ import annotations


class Config:
    SECRET_KEY = None  # set from instance/secret_key by create_app when absent
    SQLALCHEMY_DATABASE_URI = None  # default: sqlite file under the instance folder
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    REDIS_URL = "redis://127.0.0.1:6379/0"
    RQ_QUEUE = "controlplane"

    # Directory (OpenLDAP)
    LDAP_URL = "ldap://127.0.0.1:3890"
    LDAP_BASE_DN = "dc=gov,dc=bi"
    LDAP_ADMIN_DN = "cn=admin,dc=gov,dc=bi"
    LDAP_ADMIN_PASSWORD = None
    LDAP_TIMEOUT = 5

    # Docker
    DOCKER_PREFIX = "comgov"  # every container/volume/network name starts with it
    DOCKER_EXTRA_LABELS: dict[str, str] = {}
    BASE_IMAGE = "comgov/base:bookworm"
    SITE_IMAGE = "comgov/nginx:bookworm"
    PROXY_BIND = "127.0.0.1"
    PROXY_PORT = 8880
    PUBLIC_URL_SCHEME = "http"

    # Uploads
    MAX_CONTENT_LENGTH = 1024 * 1024 * 1024  # whole HTTP request (image archives are big)
    UPLOAD_MAX_BYTES = 50 * 1024 * 1024  # one site archive, compressed
    APP_IMAGE_MAX_BYTES = 1024 * 1024 * 1024  # one application image archive (docker save)
    APP_HEALTH_INTERVAL = 10  # seconds between an application's health probes

    # Security
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    WTF_CSRF_TIME_LIMIT = None
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_LOGIN = "10 per minute"
    RATELIMIT_HEADERS_ENABLED = False

    # Languages
    BABEL_DEFAULT_LOCALE = "fr"
    LANGUAGES = {"fr": "Français", "en": "English"}

    # Policies folder (YAML); default: the policies/ package
    POLICIES_DIR = None

    # Periodic jobs (seconds; 0 disables one)
    AUDIT_SEAL_INTERVAL = 10
    METERING_INTERVAL = 30
    HEALTH_INTERVAL = 30
    ROLLUP_INTERVAL = 300
    BACKUP_CHECK_INTERVAL = 600
    RETENTION_INTERVAL = 3600
    MAIL_USAGE_INTERVAL = 300

    # Databases: published on this address, ports from this range
    DB_PUBLISH_IP = "127.0.0.1"
    DB_PUBLIC_HOST = None  # the name institutions' servers use (default: DB_PUBLISH_IP)
    DB_PORT_RANGE = (20000, 20999)
    BACKUP_EVERY_HOURS = 24

    # Websites' SFTP access (one sshd per site, the login is the site's service account)
    SFTP_ENABLED = True
    SFTP_IMAGE = "comgov/sftp:bookworm"
    SFTP_PUBLISH_IP = "127.0.0.1"
    SFTP_PUBLIC_HOST = None  # the name shown in sftp:// addresses (default: SFTP_PUBLISH_IP)
    SFTP_PORT_RANGE = (22000, 22999)

    # Mail platform (one Postfix + Dovecot container for every institution)
    MAIL_IMAGE = "comgov/mail:bookworm"
    MAIL_PUBLISH_IP = "127.0.0.1"
    MAIL_SMTP_PORT = 2525  # 25 in production
    MAIL_IMAP_PORT = 1143  # 143 in production
    MAIL_SUBMISSION_PORT = 1587  # 587 in production
    MAIL_HOSTNAME = "mail.gov.bi"
    MAIL_SERVICE_PASSWORD = None  # the platform's read-only directory account
    LDAP_LDAPI_DIR = None  # host folder holding only slapd's ldapi socket (for the mail platform)

    # Storage (defaults under the instance folder)
    VOLUMES_ROOT = None  # loop-mounted quota volumes
    BACKUPS_ROOT = None
    SECRETS_KEY = None  # Fernet key for service credentials; generated in instance/ if unset
