"""Reading the YAML people write (campaigns, the calendar, import mappings) as hostile input.

PyYAML's ``safe_load`` builds no objects, but it still follows anchors and aliases: a few
hundred bytes of nested aliases (a "billion laughs") expand into a structure that validation
then walks billions of times, and whose text in an error message runs to megabytes. So:

* the file may hold at most :data:`MAX_BYTES`, and must be a regular file (not a device or FIFO);
* a key may appear once per mapping (a second one would silently hide the first from a reviewer);
* the document, with every alias expanded, may hold at most :data:`MAX_NODES` nodes and nest
  at most :data:`MAX_DEPTH` levels (counted on the composed node graph before any Python object
  is built, sharing counted once per alias use, so the check itself is cheap);
* every error message is cut to :data:`MAX_ERROR_CHARS` (see :func:`short`).

A well-kept alternative (ruamel.yaml) has no expansion limit either, so the limits are ours.
"""

from __future__ import annotations

from pathlib import Path

import yaml

MAX_BYTES = 1 << 20  # 1 MiB: a campaign file is a few hundred bytes
MAX_NODES = 20_000
MAX_DEPTH = 50
MAX_ERROR_CHARS = 2_000


class YamlInputError(ValueError):
    """A YAML file that cannot be read safely or is not YAML; the message names the file and place."""


def short(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… [{len(text) - limit:,} more characters]"


def _expanded_size(node: yaml.Node, memo: dict[int, tuple[int, int]], depth: int = 0) -> tuple[int, int]:
    """(nodes, depth) of ``node`` with every alias expanded; ``memo`` shares the work per node."""
    key = id(node)
    if key in memo:
        return memo[key]
    if depth > MAX_DEPTH:
        raise YamlInputError(f"nested more than {MAX_DEPTH} levels deep")
    children: list[yaml.Node] = []
    if isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    elif isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    if isinstance(node, yaml.MappingNode):  # a key given twice would hide one value from a reviewer
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                if key.value in seen:
                    line = key.start_mark.line + 1
                    raise YamlInputError(f"the key {short(key.value, 80)!r} is given twice (line {line})")
                seen.add(key.value)
    nodes, deepest = 1, 0
    for child in children:
        n, d = _expanded_size(child, memo, depth + 1)
        nodes += n
        deepest = max(deepest, d + 1)
        if nodes > MAX_NODES:
            raise YamlInputError(f"more than {MAX_NODES:,} values (counting every use of an alias *name)")
        if deepest > MAX_DEPTH:
            raise YamlInputError(f"nested more than {MAX_DEPTH} levels deep")
    memo[key] = (nodes, deepest)
    return memo[key]


def loads(text: str, where: str = "<text>") -> object:
    """Parse one YAML document from ``text`` within the limits; ``where`` names it in errors."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise YamlInputError(f"{where}: larger than {MAX_BYTES:,} bytes")
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader refuses control characters here already
        loader.name = where  # marks in errors name the file, not "<unicode string>"
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {})
        return loader.construct_document(node)
    except YamlInputError as e:
        raise YamlInputError(f"{where}: {e}") from None
    except yaml.YAMLError as e:
        raise YamlInputError(f"{where}: not valid YAML: {short(e, 500)}") from None
    except RecursionError:
        raise YamlInputError(f"{where}: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:  # a value YAML cannot build, e.g. the date 2025-13-01
        raise YamlInputError(f"{where}: a value cannot be read: {short(e, 300)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load(path: str | Path) -> object:
    """Parse the YAML file at ``path`` (UTF-8) within the limits."""
    path = Path(path)
    try:
        if not path.is_file():  # a folder, a FIFO, a device (/dev/zero has no end)
            raise YamlInputError(f"{path}: not a regular file")
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise YamlInputError(f"{path}: cannot be read: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise YamlInputError(f"{path}: larger than {MAX_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YamlInputError(f"{path}: not UTF-8 text (byte {e.start}): is it a YAML file?") from None
    if "\x00" in text:
        raise YamlInputError(f"{path}: holds NUL bytes: is it a YAML file?")
    return loads(text, str(path))
