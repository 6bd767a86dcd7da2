"""Before a throwaway Postgres starts: the account it runs as (never root), its private data
and socket folders, a leftover postmaster on them, and initdb."""

from __future__ import annotations

import hashlib
import os
import pwd
import stat
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

from devstack.base import DevstackError, log, log_tail
from devstack.procs import Proc


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def postgres_user() -> pwd.struct_passwd | None:
    """The account to run Postgres as when we are root (Postgres refuses root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("clicktrack", "nobody"):
        with suppress(KeyError):
            return pwd.getpwnam(name)
    raise DevstackError(
        "running as root, but there is no 'clicktrack' or 'nobody' user to run "
        "Postgres as; create one: useradd --system clicktrack"
    )


def user_args(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """Popen arguments to run a command as user (None: as ourselves), without PG* variables."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    if user is None:
        return {"env": env}
    env.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)
    return {"env": env, "user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _can_traverse(path: Path, user: pwd.struct_passwd) -> bool:
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for directory in (path, *path.parents):
        info = directory.stat()
        if info.st_uid == user.pw_uid:
            bit = stat.S_IXUSR
        elif info.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not info.st_mode & bit:
            return False
    return True


def owned_dir(path: Path, user: pwd.struct_passwd | None, *, adopt: bool) -> Path:
    """Make path a private directory of user (None: of us). adopt: chown what is there
    (our own project folders); else refuse one owned by someone else (shared /tmp)."""
    uid = os.geteuid() if user is None else user.pw_uid
    gid = os.getegid() if user is None else user.pw_gid
    created = not path.exists()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise DevstackError(f"{path} should be a directory")
    if info.st_uid != uid and not (created or (adopt and os.geteuid() == 0)):
        raise DevstackError(f"{path} belongs to uid {info.st_uid}, expected uid {uid}")
    if info.st_uid != uid:
        for root, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                os.lchown(Path(root) / name, uid, gid)
        os.chown(path, uid, gid)
    path.chmod(0o700)
    return path


def postgres_dirs(
    data_dir: Path, port: int, user: pwd.struct_passwd | None
) -> tuple[Path, Path, bool]:
    """The data and socket directories to use, and whether they are our own project folders."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    socket_dir = data_dir.with_name(data_dir.name + "-run")
    own = True
    if user is not None and not _can_traverse(data_dir.parent, user):
        base = Path(tempfile.gettempdir()) / f"clicktrack-devstack-{user.pw_name}"
        owned_dir(base, user, adopt=False)
        tag = f"{data_dir.name}-{_short_hash(str(data_dir))}"
        log(
            f"note: user {user.pw_name} cannot reach {data_dir.parent}, so the Postgres data "
            f"goes to {base / tag} instead"
        )
        data_dir, socket_dir, own = base / tag, base / f"{tag}-run", False
    if len(str(socket_dir / f".s.PGSQL.{port}.lock")) > 100:  # unix socket paths are short
        socket_dir = Path(tempfile.gettempdir()) / f"clicktrack-pg-{_short_hash(str(socket_dir))}"
        owned_dir(socket_dir, user, adopt=False)
    return data_dir, socket_dir, own


def running_postmaster(data_dir: Path) -> Proc | None:
    """The postmaster that runs on data_dir now (a leftover of an earlier run), if any."""
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    postmaster = Proc.find(pid)
    if postmaster is None or not postmaster.alive():
        return None
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None
    return postmaster if comm in {"postgres", "postmaster"} else None


def initdb(bin_dir: Path, data_dir: Path, log_path: Path, user: pwd.struct_passwd | None) -> None:
    """Create a new cluster in data_dir: user postgres, trust auth, UTF8, no locale."""
    command = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "-A", "trust"]
    with log_path.open("ab") as log_file:
        result = subprocess.run(
            [*command, "-E", "UTF8", "--no-locale", "--no-sync"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            check=False,
            **user_args(user),
        )
    if result.returncode != 0:
        raise DevstackError(
            f"initdb failed for {data_dir}; its log, {log_path}, ends with:\n{log_tail(log_path)}"
        )
