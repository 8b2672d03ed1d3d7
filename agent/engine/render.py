"""Repo files in, the files of the live tree out: overlay the role, render *.j2.

No I/O of its own: files come through a Snapshot (a commit or a checkout), so
the agent, `validate` and `plan` render identically.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, safe_range

from agent.config import Limits
from agent.errors import RenderError
from agent.source.snapshot import RepoFile, Snapshot

TEMPLATE_SUFFIX = ".j2"
BASE = "dhcp"
COMMON = "common"  # at the repo root, laid under every pair's dhcp/
PAIR_FILE = "pair.toml"

# One layer: the repo folder (relative to the pair folder) and the files below it.
Layer = tuple[str, Sequence[RepoFile]]


@dataclass(frozen=True)
class Rendered:
    files: dict[str, bytes]  # path in the live tree -> content
    sources: dict[str, str]  # path in the live tree -> repo file it came from


def role_folder(role: str) -> str:
    return f"roles/{role}"


def render_pair(
    snapshot: Snapshot,
    pair: str,
    role: str,
    node_name: str,
    target: str,
    limits: Limits | None = None,
) -> Rendered:
    """The live tree of one role: common/, then the pair's dhcp/, then roles/<role>/.

    The same for the agent (a commit), `validate` (a checkout) and `plan`.
    """
    base_folder = join_path(pair, BASE)
    base = snapshot.read(base_folder)
    if base is None:
        if pair and not snapshot.exists(pair):
            raise RenderError(pair, "pair folder not found")
        raise RenderError(f"{base_folder}/", "no dhcp/ folder in the pair folder")
    overlay_folder = join_path(pair, role_folder(role))
    layers = [
        (COMMON, snapshot.read(COMMON) or []),
        (base_folder, base),
        (overlay_folder, snapshot.read(overlay_folder) or []),
    ]
    pair_toml = snapshot.read(join_path(pair, PAIR_FILE))
    values = variables(node_name, role, target, pair_toml[0] if pair_toml else None)
    return render(layers, values, limits or Limits())


def join_path(*parts: str) -> str:
    """Repo paths joined, empty parts (the repo root as pair folder) left out."""
    return "/".join(p for p in parts if p)


def render(
    layers: Iterable[Layer], variables: Mapping[str, Any], limits: Limits | None = None
) -> Rendered:
    """Overlay the layers in order (dhcp/, then roles/<role>/) and render the templates."""
    merged: dict[str, RepoFile] = {}
    for folder, layer_files in layers:
        merged.update(_layer(layer_files, folder))
    _check_no_file_dir_clash(merged)
    env = _Sandbox(merged, limits or Limits())
    files: dict[str, bytes] = {}
    for out, repo_file in sorted(merged.items()):
        if repo_file.path.endswith(TEMPLATE_SUFFIX):
            files[out] = _render_one(env, out, repo_file, variables)
        else:
            files[out] = repo_file.data
    return Rendered(files=files, sources={out: f.path for out, f in merged.items()})


def variables(node_name: str, role: str, target: str, pair_toml: RepoFile | None) -> dict[str, Any]:
    """What templates see: node, pair (pair.toml), peer (the other node), target."""
    pair = _parse_pair(pair_toml) if pair_toml else {}
    other = {"primary": "secondary", "secondary": "primary"}.get(role)
    node = {**_table(pair, role), "name": node_name, "role": role}
    peer = {**_table(pair, other), "role": other} if other else {}
    return {"node": node, "pair": pair, "peer": peer, "target": target}


def _table(pair: Mapping[str, Any], key: str | None) -> dict[str, Any]:
    value = pair.get(key) if key else None
    return dict(value) if isinstance(value, dict) else {}


def _parse_pair(file: RepoFile) -> dict[str, Any]:
    try:
        return tomllib.loads(file.data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RenderError(file.path, "not UTF-8 text") from err
    except tomllib.TOMLDecodeError as err:
        found = re.search(r"line (\d+)", str(err))
        raise RenderError(file.path, str(err), int(found.group(1)) if found else None) from err


def _layer(files: Iterable[RepoFile], prefix: str) -> dict[str, RepoFile]:
    """Map output path -> repo file for one layer; `x` and `x.j2` together is ambiguous."""
    layer: dict[str, RepoFile] = {}
    for f in files:
        rel = f.path.removeprefix(prefix + "/")
        check_name(f.path)
        out = rel.removesuffix(TEMPLATE_SUFFIX)
        if out in layer:
            raise RenderError(f.path, f"both {layer[out].path} and {f.path} produce {out}")
        layer[out] = f
    return layer


_UNSAFE = re.compile(r"[\x00-\x1f\x7f\"\\]")


def check_name(path: str) -> None:
    """Refuse names dhcpd or a shell could misread: control bytes, quotes, non-UTF-8."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RenderError(repr(path), "file name is not valid UTF-8") from err
    if _UNSAFE.search(path):
        raise RenderError(repr(path), "file name holds a control character, quote or backslash")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise RenderError(path, "file name has an empty, '.' or '..' part")


def _check_no_file_dir_clash(merged: Mapping[str, RepoFile]) -> None:
    for out, f in merged.items():
        parts = out.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in merged:
                raise RenderError(f.path, f"{merged[parent].path} is a file where a folder is")


class _Loader(jinja2.BaseLoader):
    """Templates by output-relative name (with .j2), from the overlaid layers only."""

    def __init__(self, merged: Mapping[str, RepoFile]) -> None:
        self.by_name = {
            out + TEMPLATE_SUFFIX: f for out, f in merged.items() if f.path.endswith(".j2")
        }

    def get_source(self, environment: jinja2.Environment, template: str) -> tuple[str, str, None]:
        f = self.by_name.get(template)
        if f is None:
            raise jinja2.TemplateNotFound(template)
        return _text(f), f.path, None


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox (no attribute escapes such as ''.__class__), with the sizes it
    leaves open bounded by the limits: a reviewed template with a runaway loop or a
    huge repeat must end in a refusal that names it, not in an agent out of memory."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, merged: Mapping[str, RepoFile], limits: Limits) -> None:
        super().__init__(
            loader=_Loader(merged),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,  # a {% block %} line leaves no blank line behind
            lstrip_blocks=True,
            autoescape=False,  # the output is dhcpd.conf, not HTML
        )
        self.limits = limits
        self.loop_left = limits.template_loop
        self.globals.pop("lipsum")  # makes any amount of text; nothing a config needs
        self.globals["range"] = self._range

    def _range(self, *args: int) -> range:
        items = safe_range(*args)
        self.loop_left -= len(items)
        if self.loop_left < 0:
            limit = self.limits.template_loop
            raise SecurityError(
                f"more than {limit} range() items in one render (limits.template_loop)"
            )
        return items

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and _int_bits(left) * _int_or_zero(right) > 8 * self.limits.file_size:
            raise SecurityError(f"{left} ** {right} is too large a number")
        if operator == "*":
            _check_repeat(left, right, self.limits.file_size)
            _check_repeat(right, left, self.limits.file_size)
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # str.ljust(10**10) and friends: no call needs a size beyond one file's limit.
        # range() has a budget of its own.
        sized = () if __obj == __self._range else (*args, *kwargs.values())
        for arg in sized:
            if isinstance(arg, int) and abs(arg) > __self.limits.file_size:
                raise SecurityError(f"argument {arg} is over limits.file_size")
        return super().call(__context, __obj, *args, **kwargs)


def _int_bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _check_repeat(seq: Any, times: Any, limit: int) -> None:
    sized = isinstance(seq, str | bytes | list | tuple) and isinstance(times, int)
    if sized and len(seq) * times > limit:
        raise SecurityError(f"repeating {len(seq)} items {times} times is over limits.file_size")


def _text(f: RepoFile) -> str:
    try:
        return f.data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RenderError(f.path, "template is not UTF-8 text") from err


def _render_one(env: _Sandbox, out: str, f: RepoFile, values: Mapping[str, Any]) -> bytes:
    try:
        return _bounded_render(env, env.get_template(out + TEMPLATE_SUFFIX), values).encode()
    except jinja2.TemplateSyntaxError as err:
        raise RenderError(err.filename or f.path, err.message or str(err), err.lineno) from err
    except RenderError:
        raise
    except Exception as err:  # any template fault becomes the repo's error
        file, line = _template_frame(err.__traceback__, f.path)
        raise RenderError(file, f"{type(err).__name__}: {err}", line) from err


def _bounded_render(env: _Sandbox, template: jinja2.Template, values: Mapping[str, Any]) -> str:
    """The rendered text, refused as soon as it grows past the file size limit."""
    chunks: list[str] = []
    size = 0
    for chunk in template.generate(values):
        size += len(chunk)
        if size > env.limits.file_size:
            raise SecurityError(f"renders to more than limits.file_size ({env.limits.file_size})")
        chunks.append(chunk)
    return "".join(chunks)


def _template_frame(tb: TracebackType | None, default: str) -> tuple[str, int | None]:
    """The innermost traceback frame that is a template line (Jinja maps them)."""
    found: tuple[str, int | None] = (default, None)
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(TEMPLATE_SUFFIX):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found
