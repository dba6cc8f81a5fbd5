"""Generate ``labelkit/labelers/data/imagenet_taxonomy.json`` from WordNet 3.0.

Why: the EfficientNet-Lite classifier predicts the 1,000 ImageNet-1k classes,
each a WordNet noun synset. Summing leaf probabilities up the WordNet hypernym
graph gives useful general labels ("Cat", "Dog", "Animal", "Building"), but run
time should not need WordNet or nltk, so the graph is read once, here, and the
part we need is committed as JSON.

Inputs (nothing is downloaded):

* WordNet 3.0 database files from Debian's ``wordnet-base`` package
  (``apt-get install -y wordnet-base``; ``/usr/share/wordnet/data.noun``),
  parsed directly (the format is documented in ``man 5 wndb``).
* The list of the 1,000 ImageNet-1k wnids. The model's class index ``i`` is the
  ``i``-th wnid in sorted order (the order of the ILSVRC-2012 training folders,
  which every PyTorch ImageNet model uses). The set comes either from Debian's
  ``darknet`` package (``--darknet-labels /usr/share/darknet/data/imagenet.labels.list``:
  its first 1,000 lines are the 1k wnids in devkit order; ``apt-get download
  darknet && dpkg-deb -x darknet_*.deb x`` gets the file without installing),
  or, by default, from the committed JSON itself (regenerating names and graph).

Run: ``.venv/bin/python scripts/generate_taxonomy.py [--darknet-labels FILE]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "labelkit" / "labelers" / "data" / "imagenet_taxonomy.json"
WORDNET_DIR = Path("/usr/share/wordnet")


@dataclass
class Synset:
    wnid: str
    names: list[str]
    gloss: str
    hypernyms: list[str] = field(default_factory=list)


def read_nouns(wordnet_dir: Path) -> dict[str, Synset]:
    """Every noun synset in ``data.noun``, keyed by wnid (``n`` + 8-digit offset)."""
    path = wordnet_dir / "data.noun"
    if not path.is_file():
        raise SystemExit(f"{path} not found: apt-get install -y wordnet-base")
    synsets: dict[str, Synset] = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith(" "):  # licence header lines start with two spaces
                continue
            data, _, gloss = line.partition(" | ")
            parts = data.split()
            offset, _lex_filenum, ss_type, w_cnt_hex = parts[:4]
            if ss_type != "n":
                continue
            w_cnt = int(w_cnt_hex, 16)
            words = [parts[4 + 2 * i].replace("_", " ") for i in range(w_cnt)]
            # Lemmas may carry a syntactic marker such as "(a)"; names never need it.
            words = [w.split("(")[0] for w in words]
            pos = 4 + 2 * w_cnt
            p_cnt = int(parts[pos])
            hypernyms = []
            for i in range(p_cnt):
                symbol, target, target_pos = parts[pos + 1 + 4 * i : pos + 4 + 4 * i]
                # "@" hypernym, "@i" instance hypernym: both lead up to the root.
                if symbol in ("@", "@i") and target_pos == "n":
                    hypernyms.append(f"n{target}")
            wnid = f"n{offset}"
            synsets[wnid] = Synset(wnid=wnid, names=words, gloss=gloss.strip(), hypernyms=hypernyms)
    return synsets


def first_path(wnid: str, synsets: dict[str, Synset]) -> list[str]:
    """The chain following the first hypernym at each step, nearest first, up to the root."""
    path = []
    current = synsets[wnid]
    while current.hypernyms:
        nxt = current.hypernyms[0]
        path.append(nxt)
        current = synsets[nxt]
    return path


def all_ancestors(wnid: str, synsets: dict[str, Synset]) -> list[str]:
    """Every hypernym reachable from ``wnid`` (WordNet has multiple inheritance), nearest first."""
    seen: dict[str, int] = {}
    queue = deque([(h, 1) for h in synsets[wnid].hypernyms])
    while queue:
        node, depth = queue.popleft()
        if node in seen:
            continue
        seen[node] = depth
        queue.extend((h, depth + 1) for h in synsets[node].hypernyms)
    return sorted(seen, key=lambda n: (seen[n], n))


def load_wnids(darknet_labels: Path | None) -> list[str]:
    if darknet_labels is not None:
        lines = darknet_labels.read_text().split()
        wnids = lines[:1000]
    elif OUT.is_file():
        wnids = [c["wnid"] for c in json.loads(OUT.read_text())["classes"]]
    else:
        raise SystemExit(f"{OUT} does not exist yet: pass --darknet-labels FILE")
    wnids = sorted(wnids)
    if len(set(wnids)) != 1000:
        raise SystemExit(f"expected 1000 distinct wnids, got {len(set(wnids))}")
    # Known anchors of the standard order: 0 tench, 281 tabby, 999 toilet tissue.
    anchors = {0: "n01440764", 281: "n02123045", 999: "n15075141"}
    for index, wnid in anchors.items():
        if wnids[index] != wnid:
            raise SystemExit(f"class {index} should be {wnid}, is {wnids[index]}: wrong wnid list")
    return wnids


def build(wnids: list[str], synsets: dict[str, Synset]) -> dict[str, object]:
    classes = []
    needed: set[str] = set()
    for index, wnid in enumerate(wnids):
        if wnid not in synsets:
            raise SystemExit(f"{wnid} is not a WordNet 3.0 noun synset")
        ancestors = all_ancestors(wnid, synsets)
        needed.update(ancestors)
        classes.append(
            {
                "index": index,
                "wnid": wnid,
                "names": synsets[wnid].names,
                "gloss": synsets[wnid].gloss,
                "path": first_path(wnid, synsets),
                "ancestors": ancestors,
            }
        )
    nodes = {
        wnid: {"names": synsets[wnid].names, "hypernyms": synsets[wnid].hypernyms}
        for wnid in sorted(needed | set(wnids))
    }
    return {
        "about": "ImageNet-1k class index -> WordNet 3.0 synset, lemma names and hypernyms "
        "(path: first-hypernym chain to the root; ancestors: every hypernym, nearest first). "
        "Generated by scripts/generate_taxonomy.py; do not edit by hand.",
        "wordnet": "3.0",
        "classes": classes,
        "synsets": nodes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--darknet-labels", type=Path, help="darknet's imagenet.labels.list")
    parser.add_argument("--wordnet-dir", type=Path, default=WORDNET_DIR)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    synsets = read_nouns(args.wordnet_dir)
    taxonomy = build(load_wnids(args.darknet_labels), synsets)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(taxonomy, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out} ({len(taxonomy['classes'])} classes, {len(taxonomy['synsets'])} synsets)")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
