"""What differs between PostgreSQL and MariaDB: paths, commands and the SQL that converges.

The SQL is run by the engine's own client inside the container, as the server's OS user
(peer / unix_socket authentication, so no administrator password exists to be leaked).
PostgreSQL scripts are constant text reading every value from the exec's environment
(psql ``\\getenv``, quoted by psql as identifiers ``:"x"`` or literals ``:'x'``); MariaDB
scripts interpolate only validated identifiers and a password *hash*. Usage::

    engine = engine_for("postgresql")
    sql, env = engine.ensure_sql("app", "app_user", password)
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from provisioners.database.container_exec import DatabaseError

IDENTIFIER_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
RESERVED_USERS = frozenset({"postgres", "root", "mysql", "mariadb", "public", "none",
                            "current_user", "session_user", "admin"})
RESERVED_DATABASES = frozenset({"postgres", "template0", "template1", "mysql", "sys",
                                "information_schema", "performance_schema"})
MAX_PASSWORD = 1024

# Fixed shell text (no interpolation): the SQL arrives in the exec's environment.
_PSQL = 'printf "%s\\n" "$COMGOV_SQL" | exec psql -X -q -v ON_ERROR_STOP=1 -d postgres'
_MARIADB = ('printf "%s\\n" "$COMGOV_SQL" | exec mariadb --protocol=socket -u mysql --batch '
            '--skip-column-names')
_MARIADB_FORCE = _MARIADB + " --force"

_PG_PREAMBLE = r"""\set ON_ERROR_STOP on
\set VERBOSITY terse
\getenv db COMGOV_DB
\getenv user COMGOV_USER
SET log_min_error_statement = 'panic';
SET log_statement = 'none';
"""
_PG_ROLE = r"""\getenv password COMGOV_PASSWORD
SELECT format('CREATE ROLE %I', :'user')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
ALTER ROLE :"user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
 INHERIT PASSWORD :'password';
"""
_PG_DATABASE = r"""SELECT format('CREATE DATABASE %I OWNER %I TEMPLATE template0 ENCODING %L',
 :'db', :'user', 'UTF8')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
ALTER DATABASE :"db" OWNER TO :"user";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT ALL PRIVILEGES ON DATABASE :"db" TO :"user";
"""
_PG_DROP = r"""DROP DATABASE IF EXISTS :"db" WITH (FORCE);
"""


def validate_identifier(value: str, kind: str) -> str:
    """Database and user names: ``[a-z][a-z0-9_]{0,62}``, not a system name."""
    if not isinstance(value, str) or not IDENTIFIER_RE.match(value):
        raise ValueError(f"invalid {kind} {value!r}: use [a-z][a-z0-9_]{{0,62}}")
    reserved = RESERVED_USERS if kind == "user name" else RESERVED_DATABASES
    if value in reserved or value.startswith("pg_") or value.startswith("mariadb"):
        raise ValueError(f"{kind} {value!r} is reserved")
    return value


def validate_password(password: str) -> str:
    """Any text the environment can carry (no NUL), 1 to 1024 characters."""
    if not isinstance(password, str) or not 0 < len(password) <= MAX_PASSWORD \
            or "\0" in password:
        raise ValueError(f"a password is 1 to {MAX_PASSWORD} characters without NUL")
    return password


def mysql_native_hash(password: str) -> str:
    """MariaDB's stored form (``*`` + SHA1(SHA1(pw))): the clear text never reaches SQL."""
    inner = hashlib.sha1(password.encode("utf-8")).digest()
    return "*" + hashlib.sha1(inner).hexdigest().upper()


@dataclass(frozen=True)
class Engine:
    """One engine's container layout and client commands."""

    name: str
    port: int
    data_mount: str  # the volume's mount point in the container
    ready_cmd: tuple[str, ...]

    # -- SQL -----------------------------------------------------------------------------
    def ensure_sql(self, db: str, user: str, password: str) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) creating db and user if missing, re-asserting password/grants."""
        if self.name == "postgresql":
            sql = _PG_PREAMBLE + _PG_ROLE + _PG_DATABASE
            return ["sh", "-c", _PSQL], _pg_env(sql, db, user, password)
        pw = mysql_native_hash(password)
        sql = (f"CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4 "
               "COLLATE utf8mb4_unicode_ci;\n"
               f"CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY PASSWORD '{pw}';\n"
               + _my_user_sql(db, user, pw))
        return ["sh", "-c", _MARIADB], {"COMGOV_SQL": sql}

    def password_sql(self, db: str, user: str, password: str) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) setting the user's password (and re-asserting its rights)."""
        if self.name == "postgresql":
            sql = _PG_PREAMBLE + _PG_ROLE
            return ["sh", "-c", _PSQL], _pg_env(sql, db, user, password)
        pw = mysql_native_hash(password)
        return ["sh", "-c", _MARIADB], {"COMGOV_SQL": _my_user_sql(db, user, pw)}

    def recreate_sql(self, db: str, user: str) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) dropping the database (sessions cut) and creating it empty."""
        if self.name == "postgresql":
            sql = _PG_PREAMBLE + _PG_DROP + _PG_DATABASE
            return ["sh", "-c", _PSQL], _pg_env(sql, db, user, None)
        sql = (f"SET SESSION lock_wait_timeout = 60;\nDROP DATABASE IF EXISTS `{db}`;\n"
               f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n"
               f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';\n")
        return ["sh", "-c", _MARIADB], {"COMGOV_SQL": sql}

    def sessions_sql(self, user: str) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) listing the user's connection ids (MariaDB only)."""
        sql = f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{user}';\n"
        return ["sh", "-c", _MARIADB], {"COMGOV_SQL": sql}

    def kill_sql(self, ids: list[int]) -> tuple[list[str], dict[str, str]]:
        """(argv, environment) killing connections; ones already gone are not an error."""
        sql = "".join(f"KILL CONNECTION {int(i)};\n" for i in ids)
        return ["sh", "-c", _MARIADB_FORCE], {"COMGOV_SQL": sql}

    # -- dumps ---------------------------------------------------------------------------
    def dump_cmd(self, db: str) -> list[str]:
        """Plain SQL of the database's objects and data, without owners or grants."""
        if self.name == "postgresql":
            return ["pg_dump", "--format=plain", "--no-owner", "--no-privileges",
                    "--encoding=UTF8", f"--dbname={db}"]
        return ["mariadb-dump", "--protocol=socket", "-u", "mysql", "--single-transaction",
                "--routines", "--triggers", "--events", "--hex-blob",
                "--default-character-set=utf8mb4", db]

    def load_cmd(self, db: str) -> list[str]:
        """Client reading a dump on stdin into db; PostgreSQL loads in one transaction."""
        if self.name == "postgresql":
            return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                    f"--dbname={db}", "-f", "-"]
        return ["mariadb", "--protocol=socket", "-u", "mysql", "--batch",
                "--default-character-set=utf8mb4", f"--database={db}"]

    def load_preamble(self, user: str) -> bytes:
        """Sent before the dump: PostgreSQL creates the objects as the tenant (its owner)."""
        if self.name == "postgresql":
            return f'SET ROLE "{user}";\n'.encode()
        return b""

    def server_args(self, disk_bytes: int) -> list[str] | None:
        """Extra server options: PostgreSQL keeps its WAL well inside a small quota."""
        if self.name != "postgresql" or disk_bytes <= 0:
            return None
        max_wal = max(64, min(1024, disk_bytes // (4 << 20)))
        return ["-c", f"max_wal_size={max_wal}MB", "-c", f"min_wal_size={max(32, max_wal // 4)}MB"]


def _pg_env(sql: str, db: str, user: str, password: str | None) -> dict[str, str]:
    env = {"COMGOV_SQL": sql, "COMGOV_DB": db, "COMGOV_USER": user}
    if password is not None:
        env["COMGOV_PASSWORD"] = password
    return env


def _my_user_sql(db: str, user: str, pw_hash: str) -> str:
    return (f"ALTER USER '{user}'@'%' IDENTIFIED BY PASSWORD '{pw_hash}' ACCOUNT UNLOCK;\n"
            f"REVOKE ALL PRIVILEGES ON *.* FROM '{user}'@'%';\n"
            f"GRANT ALL PRIVILEGES ON `{db}`.* TO '{user}'@'%';\n")


ENGINES = {
    "postgresql": Engine(
        name="postgresql", port=5432, data_mount="/var/lib/postgresql/data",
        ready_cmd=("db-ready",),
    ),
    "mariadb": Engine(
        name="mariadb", port=3306, data_mount="/var/lib/mysql",
        ready_cmd=("db-ready",),
    ),
}


def engine_for(name: str) -> Engine:
    """The engine called name; anything else is refused before a container exists."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown database engine {name!r} (postgresql or mariadb)") from None


__all__ = ["DatabaseError", "ENGINES", "Engine", "engine_for", "mysql_native_hash",
           "validate_identifier", "validate_password"]
