"""A throwaway PostgreSQL cluster on loopback, started from the machine's PostgreSQL binaries."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2

DATABASE = "assetql_test"
SUPERUSER = "postgres"
SYSTEM_USER = "postgres"
APT_HINT = "install Debian package 'postgresql'"
START_TIMEOUT_S = 60


class HarnessUnavailable(RuntimeError):
    """A test server could not be started; the message says what is missing."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name))


def find_bin_dir(versions_root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The directory holding initdb, pg_ctl and postgres of one PostgreSQL version."""
    candidates = []
    on_path = shutil.which("initdb")
    if on_path:
        # Debian puts versioned binaries in /usr/lib/postgresql/N/bin; PATH entries are symlinks.
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(versions_root.glob("*/bin"), key=_version_key, reverse=True)
    for bin_dir in candidates:
        missing = [n for n in ("initdb", "pg_ctl", "postgres") if not (bin_dir / n).is_file()]
        if not missing:
            return bin_dir
    raise HarnessUnavailable(
        "initdb, pg_ctl and postgres not found together on PATH or under "
        f"{versions_root}/*/bin: {APT_HINT}"
    )


def _server_user() -> pwd.struct_passwd | None:
    """The account to run PostgreSQL as: None for the current one, `postgres` when root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise HarnessUnavailable(
            f"PostgreSQL refuses to run as root and there is no '{SYSTEM_USER}' system user "
            f"to run it as: {APT_HINT} (it creates that user) or run the tests as a non-root user"
        ) from None


def _run(cmd: list[str], user: pwd.struct_passwd | None, cwd: Path) -> None:
    if user is not None:
        cmd = ["runuser", "-u", user.pw_name, "--", *cmd]
    # cwd inside the cluster directory: the server account may not be able to read ours.
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=START_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired as exc:
        raise HarnessUnavailable(f"{' '.join(cmd)} did not finish within {exc.timeout}s") from None
    if done.returncode != 0:
        raise HarnessUnavailable(
            f"{' '.join(cmd)} exited with {done.returncode}:\n{done.stdout}{done.stderr}"
        )


def _read_log(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else "(no server log written)"


def _create_database(port: int) -> None:
    conn = psycopg2.connect(host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres")
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        conn.close()


def _start(bin_dir: Path, user: pwd.struct_passwd | None, base: Path, port: int) -> None:
    data, log = base / "data", base / "server.log"
    _run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
          "--encoding=UTF8", "--locale=C", "--no-sync"], user, base)
    # Durability settings off: the cluster lives only as long as the test session.
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {base} "
               "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    # pg_ctl -w returns once the server accepts connections, or fails after the timeout.
    try:
        _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
              "-w", "-t", str(START_TIMEOUT_S), "start"], user, base)
    except HarnessUnavailable as exc:
        raise HarnessUnavailable(f"{exc}server log:\n{_read_log(log)}") from None
    _create_database(port)


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start a fresh cluster with database `assetql_test` and yield its URL; remove it after."""
    bin_dir = find_bin_dir()
    user = _server_user()
    if user is not None and shutil.which("runuser") is None:
        raise HarnessUnavailable(
            "runuser not found (needed to start PostgreSQL as root): "
            "install Debian package 'util-linux'"
        )
    base = Path(tempfile.mkdtemp(prefix="assetql-pg-"))
    port = free_port()
    try:
        if user is not None:
            os.chown(base, user.pw_uid, user.pw_gid)
        _start(bin_dir, user, base, port)
        yield f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if (base / "data" / "postmaster.pid").exists():
            with contextlib.suppress(HarnessUnavailable):
                _run([str(bin_dir / "pg_ctl"), "-D", str(base / "data"), "-m", "immediate", "stop"],
                     user, base)
        shutil.rmtree(base, ignore_errors=True)
