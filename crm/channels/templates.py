"""Message templates: one YAML file per template, rendered with Jinja2 in a sandbox.

Layout (``$CRM_TEMPLATES_DIR``, default ``templates/`` in the checkout, beside ``campaigns/``)::

    templates/<template_id>.yaml
        id: cashback                       # the file's name without .yaml
        description: ...
        default_locale: en                 # the last step of the fallback chain
        params:                            # the placeholders the template may use
          cashback_eur: {description: Cashback amount in euros, example: "12.50"}
        locales:
          en: {subject: ..., text: ..., html: ...}   # html optional
          de: {subject: ..., text: ..., html: ...}

One file per template (not one file per locale and part) so a template and all its translations
are reviewed as one diff, and the file is read with :mod:`crm.safe_yaml` (hostile YAML bounded).

Templates are hostile input (written by people in a web page, later), so:

* rendering runs in :class:`jinja2.sandbox.ImmutableSandboxedEnvironment`: ``{{ ''.__class__ }}``
  and friends raise, no method mutates a value, ``range`` is bounded;
* ``StrictUndefined``: a missing parameter is an error naming it, never an empty string; and a
  template may only use the parameters it declares (checked when the file is read), so
  :meth:`TemplateStore.placeholders` is the complete list an editor can offer;
* the HTML part is autoescaped (a parameter holding ``<script>`` arrives as text); subject and
  text are not HTML and are not escaped; the subject is one line (line breaks from parameters
  become spaces: no header injection);
* output is bounded per part (:data:`MAX_CHARS`): rendering stops as soon as a part is too long.

Locale fallback (BCP-47, case-insensitive, ``_`` read as ``-``): the exact tag (``de-AT``), then
its shorter prefixes (``de``), then the brand's default locale (and its prefixes), then the
template's ``default_locale``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2
from jinja2 import meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from crm import safe_yaml
from crm.channels.base import Rendered
from crm.config import REPO_ROOT

TEMPLATES_DIR = REPO_ROOT / "templates"
PARTS = ("subject", "text", "html")
REQUIRED_PARTS = ("subject", "text")
MAX_CHARS = {"subject": 300, "text": 100_000, "html": 500_000}
MAX_SOURCE_CHARS = 200_000  # one part's template source
MAX_PARAM_DEPTH = 3
TEMPLATE_ID = re.compile(r"[a-z0-9][a-z0-9_]{0,63}")
PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
LOCALE = re.compile(r"[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*")
SCALARS = (str, int, float, bool, type(None))


class TemplateError(ValueError):
    """A template file that cannot be used (missing, not valid, uses an undeclared parameter)."""


class TemplateRenderError(ValueError):
    """A template that could not be rendered for a message (missing parameter, sandbox, size)."""


def templates_dir() -> Path:
    """The template folder: ``$CRM_TEMPLATES_DIR`` or ``templates/`` in the checkout."""
    return Path(os.environ.get("CRM_TEMPLATES_DIR") or TEMPLATES_DIR)


def normalize_locale(tag: str) -> str:
    """``de_at`` / ``DE-at`` -> ``de-at``: the form locales are compared in (BCP-47 is case-insensitive)."""
    tag = str(tag).strip().replace("_", "-")
    if not LOCALE.fullmatch(tag):
        raise TemplateRenderError(f"locale {tag[:40]!r}: not a BCP-47 tag")
    return tag.lower()


def locale_chain(locale: str, brand_default: str | None, template_default: str) -> list[str]:
    """The locales to try, in order (normalized, no repeats)."""
    chain: list[str] = []
    for tag in (locale, brand_default):
        if not tag:
            continue
        parts = normalize_locale(tag).split("-")
        for n in range(len(parts), 0, -1):
            candidate = "-".join(parts[:n])
            if len(parts[n - 1]) == 1:  # never stop on a singleton (de-x-...): not a locale of its own
                continue
            chain.append(candidate)
    chain.append(normalize_locale(template_default))
    return list(dict.fromkeys(chain))


def _env(autoescape: bool) -> ImmutableSandboxedEnvironment:
    return ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=autoescape,
                                         keep_trailing_newline=True)


_TEXT_ENV = _env(autoescape=False)
_HTML_ENV = _env(autoescape=True)


def _env_for(part: str) -> ImmutableSandboxedEnvironment:
    return _HTML_ENV if part == "html" else _TEXT_ENV


@dataclass(frozen=True)
class Placeholder:
    name: str
    description: str = ""
    example: object = None


@dataclass(frozen=True)
class Template:
    """One template file, checked: every part compiles and uses declared parameters only."""

    id: str
    description: str
    default_locale: str  # normalized
    params: tuple[Placeholder, ...]
    sources: Mapping[str, Mapping[str, str]]  # normalized locale -> part -> Jinja source
    compiled: Mapping[str, Mapping[str, jinja2.Template]]
    owner: str = ""  # who wrote it: never its reviewer (crm.campaigns.template_reviews)

    @property
    def locales(self) -> tuple[str, ...]:
        return tuple(self.sources)

    def version(self, locale: str) -> str:
        """The reviewed unit: sha256 of one locale's texts with the template's id and declared
        parameters (canonical JSON). Any change to the words, or to what a placeholder may hold,
        is a new version that needs its own review (crm.campaigns.template_reviews)."""
        body = {"id": self.id, "locale": locale, "parts": dict(sorted(self.sources[locale].items())),
                "params": sorted(p.name for p in self.params)}
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False,
                                         separators=(",", ":")).encode("utf-8")).hexdigest()

    def resolve_locale(self, locale: str, brand_default: str | None = None) -> str:
        for candidate in locale_chain(locale, brand_default, self.default_locale):
            if candidate in self.compiled:
                return candidate
        tried = locale_chain(locale, brand_default, self.default_locale)
        raise TemplateRenderError(f"{self.id}: no locale among {tried}")


def parse_template(data: object, where: str, template_id: str) -> Template:
    """A :class:`Template` from the parsed YAML of its file (``where`` names it in errors)."""
    if not isinstance(data, dict):
        raise TemplateError(f"{where}: a mapping with id, default_locale, params and locales")
    unknown = set(data) - {"id", "description", "default_locale", "params", "locales", "owner"}
    if unknown:
        raise TemplateError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
    if data.get("id") != template_id:
        raise TemplateError(f"{where}: id {data.get('id')!r} is not the file's name {template_id!r}")
    params_in = data.get("params") or {}
    if not isinstance(params_in, dict):
        raise TemplateError(f"{where}: params: a mapping of name -> {{description, example}}")
    params = []
    for name, spec in params_in.items():
        if not isinstance(name, str) or not PARAM_NAME.fullmatch(name):
            raise TemplateError(f"{where}: parameter name {str(name)[:40]!r} is not a plain identifier")
        spec = spec if isinstance(spec, dict) else {}
        params.append(Placeholder(name, str(spec.get("description", "")), spec.get("example")))
    declared = {p.name for p in params}
    locales_in = data.get("locales")
    if not isinstance(locales_in, dict) or not locales_in:
        raise TemplateError(f"{where}: locales: a mapping of locale -> {{subject, text, html}}")
    sources: dict[str, dict[str, str]] = {}
    compiled: dict[str, dict[str, jinja2.Template]] = {}
    for tag, parts in locales_in.items():
        try:
            loc = normalize_locale(str(tag))
        except TemplateRenderError as e:
            raise TemplateError(f"{where}: {e}") from None
        if loc in sources:
            raise TemplateError(f"{where}: locale {tag!r} given twice")
        if not isinstance(parts, dict) or not set(REQUIRED_PARTS) <= set(parts) or set(parts) - set(PARTS):
            raise TemplateError(f"{where}: locale {tag!r}: subject and text (and optionally html), nothing else")
        sources[loc], compiled[loc] = {}, {}
        for part, source in parts.items():
            if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS:
                raise TemplateError(f"{where}: {tag}.{part}: a string of at most {MAX_SOURCE_CHARS:,} characters")
            env = _env_for(part)
            try:
                used = meta.find_undeclared_variables(env.parse(source)) - set(env.globals)
                compiled[loc][part] = env.from_string(source)
            except jinja2.TemplateSyntaxError as e:
                raise TemplateError(f"{where}: {tag}.{part}: line {e.lineno}: {e.message}") from None
            undeclared = sorted(used - declared)
            if undeclared:
                raise TemplateError(f"{where}: {tag}.{part} uses {', '.join(undeclared)}, not declared in params")
            sources[loc][part] = source
    default = data.get("default_locale")
    try:
        default_norm = normalize_locale(str(default))
    except TemplateRenderError:
        raise TemplateError(f"{where}: default_locale {default!r} is not a BCP-47 tag") from None
    if default_norm not in sources:
        raise TemplateError(f"{where}: default_locale {default!r} has no texts under locales")
    owner = data.get("owner") or ""
    if not isinstance(owner, str) or len(owner) > 200:
        raise TemplateError(f"{where}: owner: the name of the person who wrote it (at most 200 characters)")
    return Template(template_id, str(data.get("description", "")), default_norm, tuple(params), sources, compiled,
                    owner.strip())


def _check_params(params: Mapping[str, object], where: str, depth: int = 0) -> None:
    if depth > MAX_PARAM_DEPTH:
        raise TemplateRenderError(f"{where}: parameters nested more than {MAX_PARAM_DEPTH} levels")
    for key, value in params.items():
        if not isinstance(key, str):
            raise TemplateRenderError(f"{where}: parameter names are strings")
        if isinstance(value, Mapping):
            _check_params(value, where, depth + 1)
        elif isinstance(value, list | tuple):
            _check_params({str(i): v for i, v in enumerate(value)}, where, depth + 1)
        elif not isinstance(value, SCALARS):
            raise TemplateRenderError(f"{where}: parameter {key!r} is a {type(value).__name__}: "
                                      "only strings, numbers, booleans, null, lists and mappings of them")


def _render_part(template: jinja2.Template, params: Mapping[str, object], limit: int, where: str) -> str:
    out: list[str] = []
    size = 0
    try:
        for chunk in template.generate(dict(params)):
            size += len(chunk)
            if size > limit:
                raise TemplateRenderError(f"{where}: longer than {limit:,} characters")
            out.append(chunk)
    except jinja2.UndefinedError as e:
        raise TemplateRenderError(f"{where}: missing parameter: {e.message}") from None
    except SecurityError as e:
        raise TemplateRenderError(f"{where}: not allowed in a template: {e}") from None
    except TemplateRenderError:
        raise
    except Exception as e:  # a template is hostile input: any failure is the template's, reported
        raise TemplateRenderError(f"{where}: {type(e).__name__}: {str(e)[:200]}") from None
    return "".join(out)


class TemplateStore:
    """The templates of a folder, read and checked on first use (and cached)."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else templates_dir()
        self._cache: dict[str, Template] = {}

    def ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.yaml") if TEMPLATE_ID.fullmatch(p.stem))

    def get(self, template_id: str) -> Template:
        if template_id in self._cache:
            return self._cache[template_id]
        if not isinstance(template_id, str) or not TEMPLATE_ID.fullmatch(template_id):
            raise TemplateError(f"template id {str(template_id)[:40]!r}: lower-case letters, digits and _")
        path = self.root / f"{template_id}.yaml"
        if not path.is_file():
            raise TemplateError(f"no template {template_id!r} (no {path})")
        try:
            data = safe_yaml.load(path)
        except safe_yaml.YamlInputError as e:
            raise TemplateError(str(e)) from None
        template = self._cache[template_id] = parse_template(data, str(path), template_id)
        return template

    def load_all(self) -> list[Template]:
        """Every template of the folder, checked (raises on the first bad one)."""
        return [self.get(t) for t in self.ids()]

    def placeholders(self, template_id: str) -> tuple[Placeholder, ...]:
        """The parameters a template may use, with descriptions and examples (for an editor)."""
        return self.get(template_id).params

    def render(self, template_id: str, locale: str, params: Mapping[str, object],
               brand_default_locale: str | None = None) -> Rendered:
        """The subject, text and HTML of ``template_id`` for ``locale`` (with the fallback chain)."""
        template = self.get(template_id)
        resolved = template.resolve_locale(locale, brand_default_locale)
        _check_params(params, f"{template_id}/{resolved}")
        parts = {}
        for part, compiled in template.compiled[resolved].items():
            parts[part] = _render_part(compiled, params, MAX_CHARS[part], f"{template_id}/{resolved}.{part}")
        subject = " ".join(parts["subject"].split())  # one line: no header injection from a parameter
        return Rendered(template_id, resolved, subject, parts["text"], parts.get("html"))

    def preview(self, template_id: str, locale: str) -> Rendered:
        """Rendered with the declared examples (a parameter without one shows as ``{name}``)."""
        params = {p.name: p.example if p.example is not None else f"{{{p.name}}}"
                  for p in self.placeholders(template_id)}
        return self.render(template_id, locale, params)
