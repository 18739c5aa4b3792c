"""The instance's user namespace: 65,536 ids mapped onto a subordinate range of the host.

bubblewrap's own ``--unshare-user`` maps exactly one id (the user running ExecGate, root
inside) and denies ``setgroups``. Programs that drop privileges to a user of their own,
as Debian's tcpdump does (initgroups, setgid, setuid to ``tcpdump``), fail there. So
when the host allows it, an instance's user namespace is made with a full mapping:

- inner ids 0..65535 map onto the running user's subordinate range from ``/etc/subuid``
  and ``/etc/subgid`` (e.g. inner root -> host uid 200000), written by ``newuidmap`` and
  ``newgidmap`` (util-linux ``unshare --map-users``); ``setgroups`` is allowed;
- the host's root (uid 0), and every host user outside the range, is NOT mapped: the
  capabilities inner root holds apply only to files owned by ids of the range, so files
  owned by the host's root (ExecGate's keys, database, config) stay out of reach even
  where they would be visible, and the host's directories are read-only to it;
- bubblewrap then runs as that inner root, without ``--unshare-user``, and creates the
  instance's other namespaces (owned by this user namespace) and its read-only root.

Inner root cannot traverse ExecGate's data directory (mode 0700, owned by the host's
root), where the instance's directories live. So the launch has two stages: as the
host's root, in a private mount namespace of its own, the instance's directories are
bind-mounted onto a staging tmpfs owned by inner root; then the user namespace is
created and bubblewrap mounts them from the staging paths. The staging mount namespace
is private: the host's mount table never changes.

Without a subordinate range (or ``newuidmap``, or ``unshare``) the runner keeps
bubblewrap's single-id namespace and says that packet captures are not available.
"""

from __future__ import annotations

import os
import pwd
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ID_COUNT", "IdMapping", "Staged", "find_mapping", "own_tree", "parse_subids"]

ID_COUNT = 65536
SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")
_STAGING_CANDIDATES = ("/mnt", "/media", "/srv", "/opt")
# Stage one, as the host's root in a private mount namespace: the instance's directories
# on a staging tmpfs owned by inner root ("$1" uid, "$2" gid, "$3" staging directory,
# then the host directories, "--", the rest of the command). Nothing secret is here.
_STAGE_SCRIPT = (
    "set -e; uid=$1; gid=$2; stage=$3; shift 3; i=0; "
    'mount -t tmpfs -o "mode=0755,uid=$uid,gid=$gid" execgate-stage "$stage"; '
    'while [ "$1" != -- ]; do mkdir "$stage/$i"; mount --bind "$1" "$stage/$i"; '
    "i=$((i + 1)); shift; done; shift; "
    'exec "$@"'
)


@dataclass(frozen=True)
class IdMapping:
    """Inner ids 0..count-1 are host ids ``uid``.. and ``gid``.. (inner root = ``uid``)."""

    uid: int
    gid: int
    count: int = ID_COUNT


@dataclass(frozen=True)
class Staged:
    """How one sandbox is launched: the argv before bubblewrap's, and where each host
    directory appears to bubblewrap."""

    prefix: tuple[str, ...]
    paths: dict[Path, str]


def parse_subids(text: str, user: str, uid: int) -> int | None:
    """The first range start of ``user`` (by name or uid) with at least 65,536 ids."""
    for line in text.splitlines():
        fields = line.strip().split(":")
        if len(fields) != 3 or fields[0] not in (user, str(uid)):
            continue
        try:
            start, count = int(fields[1]), int(fields[2])
        except ValueError:
            continue
        if start > 0 and count >= ID_COUNT:
            return start
    return None


def find_mapping(subuid: Path = SUBUID, subgid: Path = SUBGID) -> IdMapping | str:
    """The running user's full mapping, or why there is none (a sentence)."""
    uid = os.getuid()
    if uid != 0:
        # The instance's directories must be handed to inner root (a chown), which only
        # the host's root may do.
        return (
            "ExecGate does not run as root (the instance's directories cannot be handed "
            "to its inner root)"
        )
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    for tool in ("unshare", "newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian/Ubuntu: apt-get install -y uidmap util-linux)"
    try:
        uids = parse_subids(subuid.read_text(), user, uid)
        gids = parse_subids(subgid.read_text(), user, os.getgid())
    except OSError:
        uids = gids = None
    if uids is None or gids is None:
        return (
            f"{user} has no subordinate range of {ID_COUNT} ids in {subuid} and {subgid} "
            f"(as root: echo {user}:200000:{ID_COUNT} | tee -a {subuid} {subgid})"
        )
    return IdMapping(uids, gids)


def staging_dir() -> str | None:
    """An existing directory of the host to mount the staging tmpfs over (privately)."""
    return next((d for d in _STAGING_CANDIDATES if os.path.isdir(d)), None)


def stage(mapping: IdMapping, stage_dir: str, directories: Sequence[Path], bwrap: str) -> Staged:
    """The launch argv prefix ending with ``bwrap``; see the module docstring."""
    unshare = shutil.which("unshare") or "unshare"
    paths = {d: f"{stage_dir}/{i}" for i, d in enumerate(dict.fromkeys(directories))}
    prefix = (
        unshare,
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        _STAGE_SCRIPT,
        "execgate-stage",
        str(mapping.uid),
        str(mapping.gid),
        stage_dir,
        *(str(d.absolute()) for d in paths),
        "--",
        unshare,
        "--user",
        f"--map-users={mapping.uid},0,{mapping.count}",
        f"--map-groups={mapping.gid},0,{mapping.count}",
        "--setgroups=allow",
        "--setuid",
        "0",
        "--setgid",
        "0",
        "--",
        bwrap,
    )
    return Staged(prefix, paths)


def own_tree(path: Path, uid: int, gid: int) -> None:
    """Make ``path`` and what is under it owned by ``uid``:``gid`` (symlinks not followed).

    Only when the top is owned by someone else (a state directory from the other mode);
    a directory already owned right is left alone, so this costs one stat per launch.
    """
    info = path.lstat()
    if (info.st_uid, info.st_gid) == (uid, gid):
        return
    os.chown(path, uid, gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
