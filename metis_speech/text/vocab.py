"""Phone vocabularies: the official 363-symbol table of MaskGCT / Metis, or a project-own one.

The official table cannot be shipped with this package. :func:`official_vocab` takes a local
copy (argument or ``METIS_PHONE_VOCAB``) or fetches the file from its public source at a
pinned commit, caches it beside the Hugging Face Hub cache and checks its sha256, so that
``ids`` are exactly those the official T2S checkpoint was trained with.

A project-own vocabulary (for models trained by this project) is a JSON file of the same
shape, ``{"vocab": {symbol: id}}``, saved next to its checkpoint with :meth:`PhoneVocab.save`.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Union

from ..errors import HubError, MetisError
from ..hashing import sha256_file

OFFICIAL_COMMIT = "d3de90f02e7f1c7dbc24b04d52fe1b8ef438effe"
OFFICIAL_URL = (
    "https://raw.githubusercontent.com/open-mmlab/Amphion/"
    f"{OFFICIAL_COMMIT}/models/tts/maskgct/g2p/g2p/vocab.json"
)
OFFICIAL_SHA256 = "0f5c44e05f79df8ae4fd77d7772950436a8bacc83d134fdf0ae3c72412b5676a"
OFFICIAL_SIZE = 363
ENV_VAR = "METIS_PHONE_VOCAB"

PathLike = Union[str, os.PathLike]


class VocabError(MetisError):
    """A vocabulary file is missing, unreadable or not a symbol -> id table."""


class PhoneVocab:
    """A bijection between phone symbols and integer ids.

    ``encode`` maps a phone list to ids; symbols absent from the table are skipped (the
    reference does the same) and reported in ``last_unknown`` for debugging.
    """

    def __init__(self, symbol_to_id: Mapping[str, int], name: str = "custom") -> None:
        table = dict(symbol_to_id)
        ids = list(table.values())
        if not table:
            raise VocabError(f"phone vocabulary {name!r} is empty")
        if any(not isinstance(i, int) or i < 0 for i in ids) or len(set(ids)) != len(ids):
            raise VocabError(f"phone vocabulary {name!r}: ids must be unique non-negative integers")
        self.name = name
        self.symbol_to_id: Dict[str, int] = table
        self.id_to_symbol: Dict[int, str] = {i: s for s, i in table.items()}
        self.last_unknown: List[str] = []

    def __len__(self) -> int:
        return len(self.symbol_to_id)

    def fingerprint(self) -> str:
        """sha256 of the symbol -> id table (canonical JSON): equal for equal vocabularies,
        whatever file layout they were read from."""
        blob = json.dumps(sorted(self.symbol_to_id.items()), ensure_ascii=False, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def __contains__(self, symbol: object) -> bool:
        return symbol in self.symbol_to_id

    def __repr__(self) -> str:
        return f"PhoneVocab(name={self.name!r}, size={len(self)})"

    def encode(self, phones: Iterable[str]) -> List[int]:
        ids, unknown = [], []
        for p in phones:
            i = self.symbol_to_id.get(p)
            if i is None:
                unknown.append(p)
            else:
                ids.append(i)
        self.last_unknown = unknown
        return ids

    def decode(self, ids: Iterable[int]) -> List[str]:
        return [self.id_to_symbol.get(int(i), "<unk>") for i in ids]

    # ---- files -------------------------------------------------------------------------------

    @classmethod
    def from_json(cls, path: PathLike, name: Optional[str] = None) -> "PhoneVocab":
        """Read ``{"vocab": {symbol: id}}`` (the official layout) or a bare ``{symbol: id}``."""
        p = Path(path)
        if not p.is_file():
            raise VocabError(f"phone vocabulary file {p} does not exist")
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise VocabError(f"phone vocabulary file {p} is not valid JSON ({type(e).__name__})") from None
        table = data.get("vocab", data) if isinstance(data, dict) else None
        if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
            raise VocabError(f"phone vocabulary file {p} is not a JSON object {{\"vocab\": {{symbol: id}}}}")
        return cls(table, name=name or p.name)

    def save(self, path: PathLike) -> Path:
        """Write the table in the official layout (for a project-own vocabulary)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(p.suffix + ".tmp")
        tmp.write_text(json.dumps({"vocab": self.symbol_to_id}, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, p)
        return p

    @classmethod
    def from_symbols(cls, symbols: Iterable[str], name: str = "custom") -> "PhoneVocab":
        """A project-own vocabulary: ids 0..N-1 in the order given (duplicates dropped)."""
        table: Dict[str, int] = {}
        for s in symbols:
            table.setdefault(s, len(table))
        return cls(table, name=name)


def sha256_of(path: PathLike) -> str:
    """Hex sha256 of a file (kept for callers of this module; see :func:`metis_speech.hashing.sha256_file`)."""
    return sha256_file(path)


def default_cache_dir() -> Path:
    """``<huggingface hub cache>/metis_speech`` (respects HF_HOME / HF_HUB_CACHE)."""
    from ..hubenv import metis_cache_dir

    return metis_cache_dir()


def official_cache_file(cache_dir: Optional[PathLike] = None) -> Path:
    """Where the downloaded official vocabulary is kept."""
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / f"amphion-g2p-{OFFICIAL_COMMIT[:12]}" / "vocab.json"


def _how_to_pass() -> str:
    return (
        f"download it where the network is reachable and pass the local copy "
        f"(PhoneTokenizer(vocab=PATH) or {ENV_VAR}=PATH)"
    )


def official_vocab(
    path: Optional[PathLike] = None,
    cache_dir: Optional[PathLike] = None,
    download: bool = True,
    timeout: float = 30.0,
) -> PhoneVocab:
    """The official 363-symbol phone vocabulary, sha256-checked.

    Looks in order at ``path``, ``$METIS_PHONE_VOCAB``, the cache, then (if ``download``)
    fetches :data:`OFFICIAL_URL`. A local copy whose checksum differs is refused, since its
    ids would not match the official checkpoints.
    """
    local = path if path is not None else os.environ.get(ENV_VAR)
    if local:
        p = Path(local)
        if not p.is_file():
            raise VocabError(f"official phone vocabulary {p} does not exist; {_how_to_pass()}")
        digest = sha256_of(p)
        if digest != OFFICIAL_SHA256:
            raise VocabError(
                f"{p} is not the official phone vocabulary (sha256 {digest[:12]}..., expected "
                f"{OFFICIAL_SHA256[:12]}...); use PhoneVocab.from_json for a project-own vocabulary"
            )
        return _checked(PhoneVocab.from_json(p, name="official"), p)

    cached = official_cache_file(cache_dir)
    if cached.is_file() and sha256_of(cached) == OFFICIAL_SHA256:
        return _checked(PhoneVocab.from_json(cached, name="official"), cached)
    from ..hubenv import offline

    if not download or offline():
        why = "HF_HUB_OFFLINE is set" if download else "downloading is off"
        raise HubError(f"official phone vocabulary not in the cache ({cached}) and {why}; {_how_to_pass()}")

    try:
        with urllib.request.urlopen(OFFICIAL_URL, timeout=timeout) as r:  # noqa: S310 - fixed https URL
            payload = r.read()
    except Exception as e:  # noqa: BLE001 - offline, DNS, HTTP errors all end here
        raise HubError(f"cannot fetch the official phone vocabulary from {OFFICIAL_URL} ({type(e).__name__}); {_how_to_pass()}") from None
    digest = hashlib.sha256(payload).hexdigest()
    if digest != OFFICIAL_SHA256:
        raise HubError(f"{OFFICIAL_URL} returned a file with sha256 {digest[:12]}..., expected {OFFICIAL_SHA256[:12]}...; {_how_to_pass()}")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".json.tmp")
    tmp.write_bytes(payload)
    os.replace(tmp, cached)
    return _checked(PhoneVocab.from_json(cached, name="official"), cached)


def _checked(vocab: PhoneVocab, where: Path) -> PhoneVocab:
    if len(vocab) != OFFICIAL_SIZE or sorted(vocab.id_to_symbol) != list(range(OFFICIAL_SIZE)):
        raise VocabError(f"{where}: expected ids 0..{OFFICIAL_SIZE - 1}, found {len(vocab)} symbols")
    return vocab


def load_vocab(vocab: Union[None, str, PathLike, PhoneVocab, Mapping[str, int]] = None) -> PhoneVocab:
    """Normalise the ``vocab`` argument of the public API.

    ``None`` or ``"official"``: :func:`official_vocab`; a :class:`PhoneVocab`: itself; a
    mapping: wrapped; a path: the official table if its sha256 matches, else a project-own one.
    """
    if vocab is None or (isinstance(vocab, str) and vocab == "official"):
        return official_vocab()
    if isinstance(vocab, PhoneVocab):
        return vocab
    if isinstance(vocab, Mapping):
        return PhoneVocab(vocab)
    p = Path(vocab)
    if p.is_file() and sha256_of(p) == OFFICIAL_SHA256:
        return _checked(PhoneVocab.from_json(p, name="official"), p)
    return PhoneVocab.from_json(p)

