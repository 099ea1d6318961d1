"""Output minimisation for patient data: which per-sample fields the outputs carry, keyed
pseudonyms for sample names and the redaction of paths, user and host names.

:class:`OutputOptions` is what the user asks for (``varcall call --format-fields``,
``--sites-only``, ``--pseudonymise-key``, ``--pseudonym-map``, ``--redact-paths``);
:func:`resolve_privacy` checks it (one-line :class:`InputError`, before anything is
written) and gives a :class:`Privacy`, which renames samples and redacts the texts of the
outputs. Minimisation happens when the outputs are written (merge and record): the
checkpoints stay full engine output, so distributed == single-process holds for minimised
runs too.

Pseudonyms are ``P-`` and the first 8 hex digits of HMAC-SHA256(key, sample name), where
the key is the key file's content with surrounding whitespace removed: stable for the same
key and name, different for another key. The key file is never copied and its path is
written nowhere.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import hmac
import json
import os
import re
import shlex
import socket
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from varcall.core.errors import InputError

__all__ = [
    "ALL_FORMAT_FIELDS",
    "OutputOptions",
    "REDACTED",
    "Privacy",
    "parse_format_fields",
    "pseudonym",
    "read_key",
    "resolve_privacy",
]

#: The per-sample FORMAT fields varcall writes, in VCF order (the default output).
ALL_FORMAT_FIELDS: tuple[str, ...] = ("GT", "GQ", "DP", "AD", "PL")
#: What a redacted host or user name reads as.
REDACTED = "redacted"
_PSEUDONYM_HEX = 8
#: The host of a URL (``tcp://node17:8786``) and of a worker name (``name@host:pid``).
_URL_HOST_RE = re.compile(r"(\b[a-z][a-z0-9+.-]*://)(?:\[[^\]]*\]|[^/\s:@]+)")
_WORKER_HOST_RE = re.compile(r"^([^@\s/]*)@(?!host-)(.+)$")


def _worker_alias(m: re.Match) -> str:
    """``name@host-<8 hex>``: the worker's address as a digest (workers stay apart)."""
    return f"{m.group(1)}@host-{hashlib.sha256(m.group(2).encode()).hexdigest()[:8]}"


#: Options whose values (the key file, the pseudonym map) no output names.
_SECRET_OPTIONS = ("--pseudonymise-key", "--pseudonym-map")


def parse_format_fields(text: str | Sequence[str]) -> tuple[str, ...]:
    """``GT,GQ`` (or a sequence of names) as a tuple in VCF order; GT must be among them.
    Raises :class:`InputError` for an unknown or missing field."""
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in ALL_FORMAT_FIELDS]
    if unknown:
        raise InputError(
            f"--format-fields {','.join(names)}: unknown field(s) {', '.join(unknown)}; "
            f"use some of {','.join(ALL_FORMAT_FIELDS)} (or --sites-only for none)"
        )
    if "GT" not in names:
        raise InputError(
            f"--format-fields {','.join(names)}: GT is required; add GT "
            "(or use --sites-only for no sample columns)"
        )
    return tuple(f for f in ALL_FORMAT_FIELDS if f in names)


@dataclasses.dataclass(frozen=True)
class OutputOptions:
    """What the outputs of a run carry.

    format_fields: per-sample FORMAT fields written (VCF order; GT always). sites_only: no
    sample columns and no ``call_*`` arrays (INFO AC/AN stay). pseudonymise_key: a file
    (not group/world readable) whose content keys the sample pseudonyms. pseudonym_map: a
    file outside OUT to write {pseudonym: sample name} to (mode 0600). redact_paths: no
    absolute path, user or host name in any output; inputs are named by basename and the
    manifest's digests.
    """

    format_fields: tuple[str, ...] = ALL_FORMAT_FIELDS
    sites_only: bool = False
    pseudonymise_key: str | None = None
    pseudonym_map: str | None = None
    redact_paths: bool = False

    @property
    def is_default(self) -> bool:
        """True when nothing is minimised (the outputs are the default ones)."""
        return self == OutputOptions()


def read_key(path: str | os.PathLike) -> bytes:
    """The secret of a pseudonymisation key file. Raises :class:`InputError` when it is
    missing, empty, or readable by group or others."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise InputError(
            f"{p}: pseudonymisation key cannot be read ({e.strerror}); give an existing file"
        ) from e
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{p}: pseudonymisation key is not a file; give a regular file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"{p}: pseudonymisation key is readable by group or others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}); run chmod 600 {p.name}"
        )
    secret = p.read_bytes().strip()
    if not secret:
        raise InputError(f"{p}: pseudonymisation key is empty; put a secret in it")
    return secret


def pseudonym(key: bytes, name: str) -> str:
    """``P-`` and the first 8 hex digits of HMAC-SHA256(key, name)."""
    digest = hmac.new(key, name.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"P-{digest[:_PSEUDONYM_HEX]}"


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class Privacy:
    """The resolved output options of a run: output sample names and text redaction."""

    options: OutputOptions
    #: sample name -> name in the outputs (itself when not pseudonymised)
    names: Mapping[str, str]
    #: host and user names removed from texts under ``redact_paths``
    secrets: tuple[str, ...] = ()

    @property
    def format_fields(self) -> tuple[str, ...]:
        """The FORMAT fields written (empty for sites-only)."""
        return () if self.options.sites_only else self.options.format_fields

    def samples(self, samples: Sequence[str]) -> tuple[str, ...]:
        """Output names of ``samples``."""
        return tuple(self.names.get(s, s) for s in samples)

    def _replace_names(self, text: str) -> str:
        for name, alias in sorted(self.names.items(), key=lambda kv: -len(kv[0])):
            if name != alias and name:
                text = text.replace(name, alias)
        return text

    def path(self, path: str | os.PathLike) -> str:
        """A path as the outputs name it: its basename under ``redact_paths``; sample
        names in it pseudonymised."""
        text = str(path)
        if self.options.redact_paths:
            text = os.path.basename(text.rstrip("/")) or text
        return self._replace_names(text)

    def word(self, word: str) -> str:
        """One word of a command line or free text: paths (also ``--opt=PATH``) as
        :meth:`path`, a sample name as its pseudonym, host and user names removed."""
        head, sep, tail = word.partition("=")
        if sep and "/" in tail and head.startswith("-"):
            return f"{head}={self.word(tail)}"
        if "/" in word and "://" not in word:
            return self.path(word)
        return self.text(word)

    def text(self, text: str) -> str:
        """Free text: sample names pseudonymised and, under ``redact_paths``, absolute
        paths cut to basenames and host / user names removed."""
        out = self._replace_names(text)
        if self.options.redact_paths:
            out = re.sub(r"(?<![\w:/])/(?:[^\s/'\"=,;]+/)*([^\s/'\"=,;]*)", r"\1", out)
            out = _WORKER_HOST_RE.sub(_worker_alias, out)
            out = _URL_HOST_RE.sub(rf"\1{REDACTED}", out)
            for secret in self.secrets:
                out = re.sub(rf"\b{re.escape(secret)}\b", REDACTED, out)
        return out

    def command_line(self, command: str | None) -> str | None:
        """A ``varcall ...`` command line with every word through :meth:`word`."""
        if command is None or self.options.is_default:
            return command
        try:
            words = shlex.split(command)
        except ValueError:
            return self.text(command)
        out = []
        hide_next = False
        for w in words:
            if hide_next:
                out.append(REDACTED)
                hide_next = False
            elif w in _SECRET_OPTIONS:
                out.append(w)
                hide_next = True
            elif w.partition("=")[0] in _SECRET_OPTIONS:
                out.append(f"{w.partition('=')[0]}={REDACTED}")
            else:
                out.append(self.word(w))
        return shlex.join(out)

    def describe(self) -> dict[str, Any]:
        """What the manifest records of the output options (no key path, no names)."""
        o = self.options
        return {
            "format_fields": list(self.format_fields),
            "sites_only": o.sites_only,
            "pseudonymised": o.pseudonymise_key is not None,
            "redact_paths": o.redact_paths,
        }

    def tree(self, doc: Any) -> Any:
        """A JSON-like document with every string through :meth:`text` (a string with a
        ``/`` through :meth:`path`; a sample name becomes its pseudonym)."""
        if isinstance(doc, dict):
            return {self.tree(k) if isinstance(k, str) else k: self.tree(v) for k, v in doc.items()}
        if isinstance(doc, list | tuple):
            return [self.tree(v) for v in doc]
        if isinstance(doc, str):
            if doc in self.names:
                return self.names[doc]
            if "/" in doc and "://" not in doc and " " not in doc:
                return self.path(doc)
            return self.text(doc)
        return doc

    def write_map(self) -> None:
        """Write ``{pseudonym: sample name}`` to the ``--pseudonym-map`` file (mode 0600,
        written under a temporary name and renamed); nothing without that option."""
        dest = self.options.pseudonym_map
        if dest is None:
            return
        dest_path = Path(dest)
        tmp = dest_path.with_name(f".{dest_path.name}.tmp-{os.getpid()}")
        doc = {alias: name for name, alias in self.names.items()}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, dest_path)


def _host_user_names() -> tuple[str, ...]:
    names = {socket.gethostname(), socket.getfqdn()}
    try:
        names.add(getpass.getuser())
    except (KeyError, OSError):  # no user name for this uid
        pass
    return tuple(sorted(n for n in names if n and n != "localhost"))


def resolve_privacy(
    options: OutputOptions | None, samples: Sequence[str], out: str | os.PathLike
) -> Privacy:
    """Check ``options`` for a run writing to ``out`` and resolve the sample names.
    Raises :class:`InputError` (one line, nothing written) for an unreadable or
    group/world-readable key, a pseudonym map inside OUT or without a key, bad fields."""
    options = options or OutputOptions()
    parse_format_fields(options.format_fields)
    names = {s: s for s in samples}
    if options.pseudonym_map is not None:
        if options.pseudonymise_key is None:
            raise InputError(
                f"--pseudonym-map {options.pseudonym_map}: needs --pseudonymise-key; add it"
            )
        if _inside(Path(options.pseudonym_map), Path(out)):
            raise InputError(
                f"--pseudonym-map {options.pseudonym_map}: inside the output folder {out}; "
                "write the map outside OUT"
            )
        if not Path(options.pseudonym_map).resolve().parent.is_dir():
            raise InputError(
                f"--pseudonym-map {options.pseudonym_map}: its folder does not exist; create it"
            )
    if options.pseudonymise_key is not None:
        key = read_key(options.pseudonymise_key)
        names = {s: pseudonym(key, s) for s in samples}
        if len(set(names.values())) != len(names):
            raise InputError(
                f"{options.pseudonymise_key}: two samples get the same pseudonym; use another key"
            )
    secrets = _host_user_names() if options.redact_paths else ()
    return Privacy(options, names, secrets)
