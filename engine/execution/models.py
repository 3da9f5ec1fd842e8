"""Resolving which model a node uses, without loading it: presets, overrides and identities.

A preset (Hydra group `model`) maps each agent role to a reference `{source, name, revision,
dtype, variant, offload, quantization, compile, attention}` (all but the first five may also be set
preset-wide);
a node's `model` parameter overrides it with `tiny:NAME`, `random:NAME`, `hub:ID[@REV]`,
`path:DIR` or `package:MODULE:FOLDER` (a bare string is a path if that directory exists or it is
written as one, `/...`, `./...`, `../...` or `~...`, else a hub id, valid by huggingface_hub's own
rules). A `package` reference names a folder shipped inside an installed Python package (the
world preset's trained weights); it resolves to that folder's path, wherever the package is
installed, and is a `path` from then on. Offload, compile and attention change memory and speed only
and stay out of the identity; quantization changes numerics and is in it.
The identity that enters cache keys adds, for local paths, a digest of the weight files
(cached by their names, sizes and modification times so it is computed once), and for hub ids
the commit their revision resolves to.

Hub models go through huggingface_hub's own cache and settings (HF_HOME, HF_HUB_OFFLINE,
HF_ENDPOINT, tokens). Before a run, `check_hub` places every hub model the plan needs at once:
online, the hub says which commit the revision names (the run is pinned to it) and which files
a download fetches; offline, the local cache's refs say it. `require` raises one error listing
every model that is neither on disk nor downloadable, with how to provide it. Downloads happen
in the process that loads the model (`from_pretrained` fetches exactly the files it needs, with
progress bars), or ahead of time with `download` (`mora-admin models --download`).

Every request Mora sends the hub is bounded: one the library would send with no timeout waits at
most HF_HUB_ETAG_TIMEOUT seconds (huggingface_hub's own setting for metadata requests, default 10)
for each connect, read or write, and the model info is asked with that timeout too. A hub that does
not answer in time counts as one that cannot be reached (the local cache is used), and is not asked
again about the run's other models. Offline, a snapshot counts as present only when it holds what
loading needs: each component folder that model_index.json names, with its config and, for a model,
all its weights (for a transformers model, config.json and its weights), so a partial download is
refused before the run, not at the node.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from mora.engine.cache.store import Store
from mora.engine.errors import InputError, ModelNotFoundError, shown
from mora.engine.execution.model_kinds import folder_problem
from mora.engine.execution.model_loader import model_loader
from mora.engine.graph.agent import Agent
from mora.engine.userfiles import expand_user

SOURCES = ("tiny", "random", "hub", "path", "package")
DTYPES = ("float32", "float16", "bfloat16")
OFFLOADS = ("none", "model", "group", "sequential")
"""diffusers' CPU offload modes: memory and speed only, so never part of a cache key."""
QUANTIZATIONS = ("none", "int8", "nf4", "fp8", "fp8_attention")
"""bitsandbytes int8/nf4 of the denoiser and text encoders, torchao FP8 of the denoiser's linear layers, or that and
its attention in FP8 too (cuDNN): keyed (changes numerics)."""
FP8_ATTENTION_WITH = ("sdpa", "auto")
"""The `attention` a node with quantization=fp8_attention may ask: its attention is the FP8 kernel."""
COMPILES = ("off", "on", "auto")
"""torch.compile of the denoiser (run-only, mora.nodes.speed)."""


def parse_override(text: str) -> dict[str, Any]:
    """A model reference from a node's `model` parameter."""
    source, sep, rest = text.partition(":")
    if not sep or source not in SOURCES:
        try:
            local = expand_user(text, "model path").is_dir()
        except InputError:  # `~USER/...` is no hub id: a path, reported as one that cannot be used
            local = True
        local = local or text.startswith(("/", "./", "../", "~")) or os.path.isabs(text)  # meant as a folder
        source, rest = ("path", text) if local else ("hub", text)
    revision = None
    if source == "hub" and "@" in rest:
        rest, revision = rest.rsplit("@", 1)
    return {"source": source, "name": rest, "revision": revision}


def role_problem(role: str, spec: Any) -> str | None:
    """Why a preset's entry for `role` is not a model reference at all (a scalar, a list), or None: what config
    validation reports before anything runs, and `reference` before it reads the entry."""
    if spec is None or isinstance(spec, Mapping):
        return None
    return (f"model.roles.{role}: a role is a mapping such as {{source: tiny, name: NAME}} (or null for none), "
            f"not {shown(spec)}")


def resolve(agent: Agent, params: Mapping[str, Any], preset: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The model reference for a node, or a problem message."""
    if agent.model_role is None:
        return None, None
    attention = agent.param("attention")
    attentions = [c for c in attention.choices if c] if attention is not None and attention.choices else None
    return reference(agent.model_role, params, preset, attentions)


def reference(role: str, params: Mapping[str, Any], preset: Mapping[str, Any],
              attentions: list[str] | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """The model reference for `role` in `preset` (a node's `params` overriding it), or the problem a run reports at
    planning; `attentions`: the attention backends the node's agent offers (None: not checked)."""
    roles = preset.get("roles") or {}
    problem = role_problem(role, roles.get(role))
    if problem:
        return None, problem
    override = params.get("model") or ""
    if override:  # another model: the role's refiner belongs to the role's model, not to this one
        ref = {k: v for k, v in (roles.get(role) or {}).items() if k != "refiner"}
        ref.update(parse_override(override))
    elif roles.get(role):
        ref = dict(roles[role])
    else:
        return None, (f"the model preset '{preset.get('name')}' has no model for role '{role}'; add "
                      f"roles.{role} to the preset or set the node's `model` parameter")
    ref.setdefault("revision", None)
    ref.setdefault("variant", None)
    ref["dtype"] = params.get("dtype") or ref.get("dtype") or preset.get("dtype") or "float32"
    ref["offload"] = ref.get("offload") or preset.get("offload") or "none"
    ref["quantization"] = ref.get("quantization") or preset.get("quantization") or "none"
    # the node's own speed settings too, so the manifest's per-node model records what the node asked for
    ref["compile"] = params.get("compile") or ref.get("compile") or preset.get("compile") or "off"
    ref["attention"] = params.get("attention") or ref.get("attention") or preset.get("attention") or "sdpa"
    if ref["compile"] not in COMPILES:
        return None, f"model compile {ref['compile']!r} is not one of {list(COMPILES)}"
    if attentions and ref["attention"] not in attentions:  # the agent's own list: the engine knows no kernels
        return None, f"model attention {ref['attention']!r} is not one of {attentions}"
    if ref["offload"] not in OFFLOADS:
        return None, f"model offload {ref['offload']!r} is not one of {list(OFFLOADS)}"
    if ref["quantization"] not in QUANTIZATIONS:
        return None, f"model quantization {ref['quantization']!r} is not one of {list(QUANTIZATIONS)}"
    if ref["quantization"] == "fp8_attention" and ref["attention"] not in FP8_ATTENTION_WITH:
        return None, (f"model quantization 'fp8_attention' runs attention in FP8 itself; attention "
                      f"{ref['attention']!r} cannot go with it (use attention=sdpa, or quantization=fp8)")
    if ref.get("source") not in SOURCES or not isinstance(ref.get("name"), str) or not ref["name"]:
        return None, f"model reference {ref!r} needs `source` ({'/'.join(SOURCES)}) and `name`"
    if ref["dtype"] not in DTYPES:
        return None, f"model dtype {ref['dtype']!r} is not one of {list(DTYPES)}"
    problem = _check_place(ref, role)
    if problem:
        return None, problem
    if ref.get("refiner"):  # a second model finishing the first's denoising (SDXL's refiner): same dtype and memory
        refiner = ref["refiner"]
        if not isinstance(refiner, Mapping) or refiner.get("source") not in SOURCES or not refiner.get("name"):
            return None, f"refiner {refiner!r} of role {role} needs `source` ({'/'.join(SOURCES)}) and `name`"
        refiner = {"revision": None, "variant": None, **refiner, "dtype": ref["dtype"], "offload": ref["offload"],
                   "quantization": ref["quantization"]}
        problem = _check_place(refiner, f"{role} refiner")
        if problem:
            return None, problem
        ref["refiner"] = {k: refiner[k] for k in sorted(refiner)}
    return {k: ref[k] for k in sorted(ref)}, None


def _check_place(ref: dict[str, Any], role: str | None) -> str | None:
    """For a local folder, the problem if it is not there; for a built one, if no builder has its name; else None.

    A local folder's path is made absolute in `ref`; a hub id must be one (huggingface_hub's own rules), and a
    revision a string (`revision: 1.0` in YAML is a number: quote it).
    """
    if ref.get("revision") is not None and not isinstance(ref["revision"], str):
        return (f"model revision {shown(ref['revision'])} (role {role}) is not a string: a branch, tag or commit is "
                "written as one (in YAML, quote it)")
    if ref["source"] == "hub":
        problem = hub_id_problem(ref["name"], role)
        if problem:
            return problem
    if ref["source"] in ("tiny", "random"):
        buildable = model_loader().buildable
        known = sorted(f"{s}:{n}" for s, n in buildable()) if buildable is not None else None
        if known is not None and f"{ref['source']}:{ref['name']}" not in known:
            return f"no {ref['source']} model named '{ref['name']}' (role {role}); known: {', '.join(known)}"
    if ref["source"] == "package":
        path, problem = package_folder(ref["name"])
        if problem:
            return f"{problem} (role {role})"
        ref["source"], ref["name"] = "path", str(path)
    if ref["source"] == "path":
        try:
            path = expand_user(ref["name"], f"model path (role {role})")
        except InputError as e:
            return str(e)
        if not path.is_dir():
            return (f"model path '{path}' does not exist or is not a directory (role {role}); give "
                    "a folder written by save_pretrained")
        wrong = folder_problem(role, path) if role else None
        if wrong:
            return wrong
        ref["name"] = str(path.resolve())
    return None


def hub_id_problem(name: str, role: str | None = None) -> str | None:
    """Why `name` is no hub id (`a b/c`, `x/y/z`, `me/model@main` in a preset's name), by huggingface_hub's own
    validator, or None."""
    hub_library()
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError as e:
        hint = "; a preset gives the revision as `revision: REV`" if "@" in name else ""
        return f"invalid hub model id {name!r} (role {role}): {e}{hint}"
    return None


def hub_library() -> None:
    """Import huggingface_hub's settings, reporting one it cannot read (`HF_HUB_ETAG_TIMEOUT=abc`) as the user's
    input rather than as an internal error. The library parses its environment once, at import."""
    try:
        from huggingface_hub import constants  # noqa: F401
    except ValueError as e:
        bad = [f"{k}={v!r}" for k, v in sorted(os.environ.items()) if k.startswith("HF_") and repr(v) in str(e)]
        raise InputError(f"{' or '.join(bad) or 'a Hugging Face setting in the environment'} cannot be read by "
                         f"huggingface_hub ({e}); give a number of seconds, or unset it") from None


def hub_timeout() -> float:
    """How long (seconds) Mora waits for each hub request: huggingface_hub's HF_HUB_ETAG_TIMEOUT (default 10)."""
    hub_library()
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


def _bounded_session() -> None:
    """Give every request of huggingface_hub's shared HTTP client that asks no timeout one of `hub_timeout` (the
    library's client has none, and some of its calls, such as listing a repository's files, pass none)."""
    from huggingface_hub import get_session

    session = get_session()
    hooks = getattr(session, "event_hooks", None)  # an httpx client (a requests session, in older versions, has none)
    if isinstance(hooks, dict) and _bound_request not in hooks.get("request", []):
        session.event_hooks = {**hooks, "request": [*hooks["request"], _bound_request]}


def _bound_request(request: Any) -> None:
    """httpx request hook: each unset part of the request's timeout (connect, read, write, pool) becomes
    `hub_timeout()`."""
    limit = hub_timeout()
    asked = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {k: limit if asked.get(k) is None else asked[k]
                                     for k in ("connect", "read", "write", "pool")}


def label(ref: Mapping[str, Any]) -> str:
    """`source:name[@revision][ [quantization]]`: how workers name their resident models (placement, manifests)."""
    rev = f"@{ref['revision']}" if ref.get("revision") else ""
    quantized = f" [{ref['quantization']}]" if ref.get("quantization", "none") != "none" else ""
    return f"{ref['source']}:{ref['name']}{rev}{quantized}"


def package_folder(name: str) -> tuple[Path | None, str | None]:
    """The folder `MODULE:FOLDER` names inside an installed package, or a problem message."""
    from importlib.resources import files

    module, sep, folder = name.partition(":")
    if not sep or not module or not folder:
        return None, f"a package model is named 'MODULE:FOLDER' (e.g. mora.nodes.world:weights/sd) but is {name!r}"
    try:
        path = Path(str(files(module) / folder))
    except (ModuleNotFoundError, TypeError) as e:
        return None, f"package model {name!r}: no package {module!r} ({e})"
    if not path.is_dir():
        return None, f"package model {name!r}: '{path}' is not a folder in the installed package"
    return path, None


def identity(ref: dict[str, Any] | None, store: Store) -> dict[str, Any] | None:
    """What of a model reference enters the cache key."""
    if ref is None:
        return None
    ident = {k: ref.get(k) for k in ("source", "name", "revision", "dtype", "variant")}
    if ref.get("quantization", "none") != "none":
        ident["quantization"] = ref["quantization"]
    if ref["source"] in ("tiny", "random"):
        from mora.engine.execution.model_loader import model_loader

        ident["build"] = model_loader().build_version
    elif ref["source"] == "path":
        ident["weights"] = weights_digest(Path(ref["name"]), store)
    elif ref["source"] == "hub":
        ident["commit"] = ref.get("commit") or hub_commit(ref["name"], ref.get("revision"))
    if ref.get("refiner"):
        ident["refiner"] = identity(ref["refiner"], store)
    return ident


def hub_cache_dir() -> Path:
    """The local Hugging Face hub cache, found as huggingface_hub finds it (without importing it)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "huggingface" / "hub"


def hub_commit(repo_id: str, revision: str | None) -> str | None:
    """The commit a hub id (at a branch or tag, default main) resolves to in the local cache, if it is there.

    A hub id alone does not say which weights it names: when the cached snapshot moves to a new
    commit, the cache key must change with it.
    """
    rev = revision or "main"
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        return rev
    ref_file = hub_cache_dir() / f"models--{repo_id.replace('/', '--')}" / "refs" / rev
    try:
        return ref_file.read_text().strip() or None
    except OSError:
        return None


def model_files(folder: Path) -> list[Path]:
    """Every file under a model folder, through symlinked folders too (a pipeline may share a component with another
    by a symlink, as the world's FLF2V shares the I2V's VAE; `rglob` would leave its bytes out of the key). A folder
    reached twice (a link loop, or two links to one place) is read once."""
    seen: set[Path] = set()
    files = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = Path(root).resolve()
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()  # walked in name order: which of two links to one place is read does not vary by machine
        files += [Path(root) / n for n in names if (Path(root) / n).is_file()]
    return files


def weights_digest(folder: Path, store: Store) -> str:
    """sha256 over a model folder's files, memoized in the index by each file's name, size, times and inode.

    Size and mtime alone miss weights replaced in place by ones of the same size and timestamp (unpacked from a
    reproducible archive with normalised mtimes): any write or replacement changes st_ctime, which nobody can set,
    and a replacement by rename changes the inode; either only costs hashing the folder again.
    """
    files = sorted(p for p in model_files(folder) if not any(s.startswith(".") for s in p.parts[-3:]))
    signature = hashlib.sha256()
    for p in files:
        st = p.stat()
        # not st_dev: a container's overlay or an NFS client numbers the same device differently each time
        signature.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\0{st.st_ino}\n".encode())
    memo_key = f"weights:{signature.hexdigest()}"
    memo = store.index.get(memo_key)
    if isinstance(memo, str):
        return memo
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.relative_to(folder)}\0".encode())
        with open(p, "rb") as f:
            while chunk := f.read(1 << 24):
                h.update(chunk)
    digest = h.hexdigest()
    store.index.set(memo_key, digest)
    return digest



# hub models before a run ------------------------------------------------------------------
SMALL_FILES = ("*.json", "*.txt", "*.model", "*.jinja", "*.tiktoken")
"""Configs, tokenizers and templates: always fetched with a model (they are small)."""


@dataclass(frozen=True)
class Availability:
    """Where a hub model stands before a run: on disk, fetchable, or neither (and why)."""

    name: str
    revision: str | None
    state: str
    """'present' (in the local Hugging Face cache), 'downloadable' or 'missing'."""
    commit: str | None = None
    size: int | None = None
    """Bytes of the model's files (known when the hub was asked)."""
    to_fetch: int | None = None
    """Bytes a download still has to fetch (0 when present)."""
    files: tuple[str, ...] = ()
    reason: str = ""


def wanted_files(files: Iterable[str], variant: str | None, components: Iterable[str] | None = None) -> list[str]:
    """The files of a repository that loading it needs: small files plus one set of weights per folder.

    Policy, as diffusers and transformers load: a pipeline's weights live in its component folders
    (`components`, from model_index.json), so top-level single-file checkpoints and folders the
    pipeline does not name are skipped; in each folder safetensors are preferred to .bin, and the
    `variant` weights (`*.fp16.safetensors`) are taken where that folder has them, else its plain ones.
    """
    files = list(files)
    keep = None if components is None else set(components)
    chosen = [f for f in files if any(fnmatch.fnmatch(PurePosixPath(f).name, p) for p in SMALL_FILES)
              and (keep is None or len(PurePosixPath(f).parts) == 1 or PurePosixPath(f).parts[0] in keep)]
    by_folder: dict[str, list[str]] = {}
    for f in files:
        path = PurePosixPath(f)
        in_component = keep is None or (len(path.parts) > 1 and path.parts[0] in keep)
        if path.suffix in (".safetensors", ".bin") and in_component:
            by_folder.setdefault(str(path.parent), []).append(f)
    tagged = re.compile(rf"\.{re.escape(variant)}(-\d+-of-\d+)?\.(safetensors|bin)$") if variant else None
    for weights in by_folder.values():
        ext = ".safetensors" if any(f.endswith(".safetensors") for f in weights) else ".bin"
        weights = [f for f in weights if f.endswith(ext)]
        variants = [f for f in weights if tagged and tagged.search(f)]
        plain = [f for f in weights if len(PurePosixPath(f).suffixes) == 1]
        chosen += variants or plain
    return sorted(set(chosen))


_UNANSWERED: dict[str, str] = {}
"""Hub endpoints that did not answer in time in this process, with why: the other models are not asked again."""


def check_hub(ref: Mapping[str, Any]) -> Availability:
    """Where one hub model stands; asks the hub unless HF_HUB_OFFLINE is set."""
    hub_library()
    from huggingface_hub import constants

    name, revision = ref["name"], ref.get("revision")
    if constants.HF_HUB_OFFLINE:
        return _check_local(name, revision, "HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if constants.ENDPOINT in _UNANSWERED:  # one wait per process, not one per model
        return _check_local(name, revision, _UNANSWERED[constants.ENDPOINT])
    timeout = hub_timeout()
    _bounded_session()
    try:
        info = HfApi().model_info(name, revision=revision, files_metadata=True, timeout=timeout)
        sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
        head = next((f for f in ("model_index.json", "config.json") if f in sizes), None)
        if head is None:
            return Availability(name, revision, "missing", reason="neither model_index.json nor config.json at the "
                                                                 "top: not a diffusers pipeline or transformers model")
        # by revision, not commit, so the hub cache records which commit the revision names (for offline runs)
        config = Path(hf_hub_download(name, head, revision=revision, etag_timeout=timeout))
    except GatedRepoError:
        return Availability(name, revision, "missing", reason="gated on the hub: accept its terms on its page and log "
                                                             "in (`hf auth login` or HF_TOKEN)")
    except RepositoryNotFoundError:
        return Availability(name, revision, "missing", reason="no such repository on the hub (or it is private: log "
                                                             "in with `hf auth login` or HF_TOKEN)")
    except RevisionNotFoundError:
        return Availability(name, revision, "missing", reason=f"the hub has no revision {revision!r}")
    except Exception as e:  # noqa: BLE001 (unreachable: transport errors (httpx, requests) differ between huggingface_hub versions)
        if isinstance(e, TimeoutError) or "Timeout" in type(e).__name__:  # httpx's ReadTimeout, requests' Timeout...
            _UNANSWERED[constants.ENDPOINT] = (f"the hub ({constants.ENDPOINT}) did not answer within {timeout:g} s "
                                               "(HF_HUB_ETAG_TIMEOUT)")
            return _check_local(name, revision, _UNANSWERED[constants.ENDPOINT])
        return _check_local(name, revision, f"the hub cannot be reached ({type(e).__name__}: {e})")
    commit = config.parent.name
    components = None
    if head == "model_index.json":
        components, problem = pipeline_components(config)
        if problem:
            return Availability(name, revision, "missing", reason=problem)
    files = tuple(wanted_files(sizes, ref.get("variant"), components))
    to_fetch = sum(sizes[f] for f in files if not (config.parent / f).is_file())
    state = "present" if to_fetch == 0 else "downloadable"
    return Availability(name, revision, state, commit, sum(sizes[f] for f in files), to_fetch, files)


def pipeline_components(index_file: Path) -> tuple[list[str], str | None]:
    """The component folders a diffusers pipeline's model_index.json names, or why it is no such file: a JSON
    object whose entries not starting with `_` are settings, or `[library, class]` (`[null, null]`: none)."""
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        return [], f"its model_index.json cannot be read as JSON ({e})"
    if not isinstance(index, dict):
        return [], f"its model_index.json is {shown(index)}, not a JSON object of the pipeline's components"
    components = []
    for key, value in index.items():
        if key.startswith("_") or not isinstance(value, list):
            continue
        if len(value) != 2 or not all(v is None or isinstance(v, str) for v in value):
            return [], (f"its model_index.json gives component {key!r} as {shown(value)}, not [library, class] "
                        "(or [null, null] for none)")
        if value[0]:
            components.append(key)
    return components, None


def _weights_problem(folder: Path) -> str | None:
    """Why a model folder of a snapshot has no complete weights (no config, no weights, a sharded set missing
    shards), or None. A link to a blob never fetched is no file."""
    if not folder.is_dir():
        return "missing"
    if not (folder / "config.json").is_file():
        return "no config.json"
    names = {p.name for p in folder.iterdir() if p.is_file()}
    if any(n.endswith((".safetensors", ".bin")) and not re.search(r"-\d+-of-\d+\.", n) for n in names):
        return None  # one file holds them all
    lacking = ""
    for index in sorted(n for n in names if re.search(r"\.(safetensors|bin)\.index(\.[\w-]+)?\.json$", n)):
        try:
            shards = set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values())
        except (ValueError, OSError, KeyError, TypeError, AttributeError):
            lacking = lacking or f"{index} is not a weights index"
            continue
        if shards and shards <= names:
            return None
        gone = sorted(shards - names)
        lacking = lacking or f"{len(gone)} shard(s) its {index} lists are not there ({', '.join(gone[:3])})"
    return lacking or "no weights (.safetensors or .bin)"


def snapshot_problem(snapshot: Path) -> str | None:
    """What a local hub snapshot lacks for loading (`folder: why`), or None if it holds a whole model.

    A pipeline needs each component folder model_index.json names with a config; a folder whose config is
    config.json is a model and needs its weights too (schedulers, tokenizers and processors have none). A
    transformers model needs config.json and its weights at the top.
    """
    if (snapshot / "model_index.json").is_file():
        components, problem = pipeline_components(snapshot / "model_index.json")
        if problem:
            return problem
        for component in components:
            folder = snapshot / component
            if not folder.is_dir() or not any(p.suffix == ".json" and p.is_file() for p in folder.iterdir()):
                return f"{component}/: no config"
            if (folder / "config.json").is_file() and (why := _weights_problem(folder)):
                return f"{component}/: {why}"
        return None
    why = _weights_problem(snapshot)
    return f"no model_index.json, and {why}" if why == "no config.json" else why


def _check_local(name: str, revision: str | None, why_offline: str) -> Availability:
    commit = hub_commit(name, revision)
    snapshot = hub_cache_dir() / f"models--{name.replace('/', '--')}" / "snapshots" / str(commit)
    if not commit or not snapshot.is_dir():
        return Availability(name, revision, "missing", reason=f"not in the local Hugging Face cache and {why_offline}")
    lacking = snapshot_problem(snapshot)
    if lacking:
        return Availability(name, revision, "missing", commit, reason=f"incomplete in the local Hugging Face cache "
                                                                      f"({lacking}) and {why_offline}")
    size = sum(p.stat().st_size for p in snapshot.rglob("*") if p.is_file())
    return Availability(name, revision, "present", commit, size, 0)


def require(refs: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str | None], Availability]:
    """Check every distinct hub model at once; raise one error naming all that cannot be had.

    Returns each model's availability by (name, revision), so the caller can pin its commit.
    """
    hub_library()  # a run's first import of it, before any node's model library imports it too
    every = [m for r in refs for m in (r, r.get("refiner")) if m]
    seen = {(r["name"], r.get("revision")): r for r in every if r.get("source") == "hub"}
    found = {key: check_hub(ref) for key, ref in seen.items()}
    missing = [a for a in found.values() if a.state == "missing"]
    if missing:
        lines = [f"  - {a.name}{'@' + a.revision if a.revision else ''}: {a.reason}" for a in missing]
        raise ModelNotFoundError(
            f"{len(missing)} model(s) this run needs cannot be had:\n" + "\n".join(lines) + "\nProvide them by "
            "running `mora-admin models --download` (same model=PRESET) where the hub can be reached and copying "
            "the Hugging Face cache (HF_HOME) here, or point the role at a folder written by save_pretrained "
            "(`model=path:/that/folder`, or {source: path, name: ...} in the preset)."
        )
    return found


def pinned(ref: dict[str, Any], found: Mapping[tuple[str, str | None], Availability]) -> dict[str, Any]:
    """`ref` (and its refiner) with each hub model's commit, as `require` found it, for keys and loads alike."""
    out = dict(ref)
    if out.get("refiner"):
        out["refiner"] = pinned(out["refiner"], found)
    if out["source"] == "hub":
        out["commit"] = found[(out["name"], out.get("revision"))].commit
    return out


def download(ref: Mapping[str, Any], availability: Availability) -> Path:
    """Fetch a hub model's files (as `wanted_files` chose) into the Hugging Face cache, with huggingface_hub's bars."""
    hub_library()
    from huggingface_hub import snapshot_download

    _bounded_session()
    return Path(snapshot_download(ref["name"], revision=availability.commit, allow_patterns=list(availability.files)))
