"""Building the synthetic world: identities, their records and images, shards, statistics, a contact sheet.

Texts are made without images (`plan_identities` + `make_record`), so the text side and its ambiguity
statistics can be produced and tested on their own; `build_world` adds the pictures and writes shards.

`WorldOptions` adds what cloth-changing and visible-infrared Re-ID need: changes of clothes, infrared
cameras, and per-image visibility annotations. Left at their defaults, the world is byte-identical to one
built without them.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import statistics
import time
from collections import Counter
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ireid.core.processes import available_cores
from ireid.core.records import QA_TYPES, SPLITS, Record, make_key
from ireid.core.seeding import derive_rng
from ireid.core.shards import DatasetWriter, atomic_write_json
from ireid.core.synthetic.identities import sample_identities, sample_outfits
from ireid.core.synthetic.render import encode_jpeg, render_image
from ireid.core.synthetic.shots import NUM_CAMERAS, hidden_attributes, is_infrared, plan_shot
from ireid.core.synthetic.text import choose_mentioned, describe, mentioned_attributes, rda_groups
from ireid.core.vocabulary.attributes import ATTRIBUTE_NAMES

SOURCE = "synthetic"
DEFAULTS = {"ids_train": 2000, "ids_val": 100, "ids_test": 200, "images_per_id": 4, "shard_size": 500}
STATS_FILE = "stats.json"


RENDER_CHUNK = 64  # images per task sent to a rendering process
MIN_PARALLEL = 2 * RENDER_CHUNK  # fewer images render faster here than a process pool starts


def _render_jpeg(job: tuple[Any, ...]) -> bytes:
    outfit, seed, identity, image, camid, size, outfit_index = job
    picture = render_image(
        outfit, seed=seed, identity=identity, image=image, camid=camid, size=size, outfit=outfit_index
    )
    return encode_jpeg(picture)


class _InProcess:
    """The pool interface, rendering here: for small worlds and `workers=1`."""

    def map(self, fn: Any, jobs: Iterable[Any], chunksize: int = 1) -> Iterator[Any]:
        return map(fn, jobs)


@contextmanager
def render_pool(jobs: int, workers: int | None) -> Iterator[Any]:
    """Processes that render in parallel, results in order. They are forked: they only draw with PIL and numpy, and
    a forked child, unlike a spawned one, needs no `if __name__ == "__main__"` guard in the caller's script."""
    workers = workers or available_cores()
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or jobs < MIN_PARALLEL or "fork" not in multiprocessing.get_all_start_methods():
        yield _InProcess()
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        yield pool


@dataclass(frozen=True)
class WorldOptions:
    """What the world adds for cloth-changing and visible-infrared Re-ID.

    `outfits_per_id`: outfits per person (the first is the identity's own attributes; each further one
    re-draws clothes, carried items, headwear and place), worn in consecutive blocks of the colour images.
    `infrared_cameras`: cameras after the colour ones; each sees every person once, in outfit
    `camera % outfits_per_id`. `mark_occlusion`: leave out of an image's texts and `attributes` what it
    does not show (colours are always left out of infrared images); on by itself whenever either option is.
    """

    outfits_per_id: int = 1
    infrared_cameras: int = 0
    mark_occlusion: bool = False

    def __post_init__(self) -> None:
        if self.outfits_per_id < 1:
            raise ValueError(f"outfits_per_id must be at least 1, got {self.outfits_per_id}")
        if self.infrared_cameras < 0:
            raise ValueError(f"infrared_cameras must be >= 0, got {self.infrared_cameras}")

    @property
    def annotate_visibility(self) -> bool:
        return self.mark_occlusion or self.outfits_per_id > 1 or self.infrared_cameras > 0

    def config(self) -> dict[str, Any]:
        """The options that differ from their defaults (what `stats.json` records)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v != getattr(WorldOptions, k)}


@dataclass(frozen=True)
class View:
    """One image of a person: its index among the person's images, the camera, and the outfit worn."""

    image: int
    camid: int
    outfit: int = 0


@dataclass(frozen=True)
class Identity:
    """One person of the world. `index` is world-wide (seeds derive from it); `pid` counts within the split."""

    index: int
    split: str
    pid: int
    attributes: Mapping[str, str]
    mentioned: tuple[str, ...]  # what every initial description of this person (first outfit) names
    other_outfits: tuple[Mapping[str, str], ...] = ()  # changes of clothes: outfits 1, 2, ...

    @property
    def orig_pid(self) -> str:
        return f"syn{self.index:06d}"

    @property
    def outfits(self) -> tuple[Mapping[str, str], ...]:
        return (self.attributes, *self.other_outfits)


def plan_identities(seed: int, ids_train: int, ids_val: int, ids_test: int, outfits_per_id: int = 1) -> list[Identity]:
    """Draw unique identities and split them disjointly: the first `ids_train` train, then val, then test."""
    counts = {"train": ids_train, "val": ids_val, "test": ids_test}
    if min(counts.values()) < 0 or sum(counts.values()) == 0:
        raise ValueError(f"identity counts must be >= 0 and not all 0, got {counts}")
    attributes = sample_identities(seed, sum(counts.values()))
    outfits = sample_outfits(seed, attributes, outfits_per_id) if outfits_per_id > 1 else None
    identities, index = [], 0
    for split, count in counts.items():
        for pid in range(count):
            mentioned = choose_mentioned(attributes[index], derive_rng(seed, "mentioned", index))
            others = outfits[index][1:] if outfits else ()
            identities.append(Identity(index, split, pid, attributes[index], mentioned, others))
            index += 1
    return identities


def camera_ids(seed: int, identity: int, images_per_id: int) -> list[int]:
    """Distinct cameras for an identity's images (cycling when it has more images than there are cameras)."""
    order = list(range(NUM_CAMERAS))
    derive_rng(seed, "cameras", identity).shuffle(order)
    return [order[i % NUM_CAMERAS] for i in range(images_per_id)]


def views(seed: int, identity: int, images_per_id: int, options: WorldOptions = WorldOptions()) -> list[View]:
    """A person's images: colour cameras first (outfits in consecutive blocks), then one per infrared camera."""
    if options.outfits_per_id > images_per_id:
        raise ValueError(
            f"outfits_per_id ({options.outfits_per_id}) exceeds images_per_id ({images_per_id}): "
            "every outfit needs a colour image"
        )
    shots = [
        View(image, camid, image * options.outfits_per_id // images_per_id)
        for image, camid in enumerate(camera_ids(seed, identity, images_per_id))
    ]
    shots += [
        View(images_per_id + c, NUM_CAMERAS + c, c % options.outfits_per_id) for c in range(options.infrared_cameras)
    ]
    return shots


def make_record(
    identity: Identity, image: int, camid: int, seed: int, *, outfit: int = 0, annotate_visibility: bool = False
) -> Record:
    """The annotations of one image; texts vary per image (templates), attributes only with the outfit.

    With `annotate_visibility` (always for an infrared camera) what the image does not show is left out of
    its texts and `attributes`.
    """
    attributes = identity.outfits[outfit]
    hidden: frozenset[str] = frozenset()
    if annotate_visibility or is_infrared(camid):
        hidden = hidden_attributes(attributes, plan_shot(seed, identity.index, image, camid))
    mentioned = identity.mentioned
    if outfit:
        mentioned = choose_mentioned(attributes, derive_rng(seed, "mentioned", identity.index, "outfit", outfit))
    if hidden & set(mentioned):
        rng = derive_rng(seed, "mentioned", identity.index, "outfit", outfit, "shown", *sorted(hidden))
        mentioned = choose_mentioned(attributes, rng, hidden)
    texts = describe(attributes, mentioned, derive_rng(seed, "text", identity.index, image), hidden)
    return Record(
        key=make_key(identity.split, f"{identity.orig_pid}_{image:02d}"),
        pid=identity.pid,
        split=identity.split,
        source=SOURCE,
        camid=camid,
        orig_pid=identity.orig_pid,
        captions=[texts.fine],
        initial_description=texts.initial,
        fine_description=texts.fine,
        sub_captions=list(texts.sub_captions),
        qas=list(texts.qas),
        rda_groups=rda_groups(attributes, texts.initial, hidden),
        attributes={name: value for name, value in attributes.items() if name not in hidden},
        clothes_id=outfit,
        modality="infrared" if is_infrared(camid) else "rgb",
    )


def world_records(
    seed: int, identities: Iterable[Identity], images_per_id: int, options: WorldOptions = WorldOptions()
) -> list[Record]:
    """Every record of the world without rendering an image, in the order `build_world` writes them."""
    return [
        make_record(
            identity,
            view.image,
            view.camid,
            seed,
            outfit=view.outfit,
            annotate_visibility=options.annotate_visibility,
        )
        for identity in identities
        for view in views(seed, identity.index, images_per_id, options)
    ]


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def ambiguity_stats(
    records: Sequence[Record], split: str = "test", people: Mapping[Hashable, Mapping[str, str]] | None = None
) -> dict[str, Any]:
    """How many identities of `split` fit each record's initial description, and its fine description.

    Fitting means matching on every attribute the text states, read from the attribute annotations: the
    initial description states `mentioned_attributes(record)`, the fine description every attribute the
    image shows (its `attributes`). `people` holds every person (in one outfit) of the split with all its
    values; by default each record's `attributes`, complete in a world without visibility annotations.
    """
    queries = [r for r in records if r.split == split]
    if not queries:
        return {"identities": 0}
    if people is None:
        people = {r.orig_pid: r.attributes for r in queries}

    def fitting(record: Record, names: Iterable[str]) -> int:
        names = tuple(names)
        return sum(all(other[n] == record.attributes[n] for n in names) for other in people.values())

    initial = [fitting(r, mentioned_attributes(r)) for r in queries]
    fine = [fitting(r, r.attributes) for r in queries]
    stats = {
        "identities": len({r.orig_pid for r in queries}),
        "records": len(queries),
        "initial_consistent": _summary(initial) | {"median": statistics.median(initial)},
        "fine_unique_share": sum(f == 1 for f in fine) / len(fine),
    }
    if len(people) != stats["identities"]:
        stats["outfits"] = len(people)
    return stats


def view_stats(records: Sequence[Record]) -> dict[str, Any]:
    """Images per modality and per outfit, and how often each attribute is hidden (occluded or infrared)."""
    hidden = Counter(name for r in records for name in ATTRIBUTE_NAMES if name not in r.attributes)
    return {
        "modalities": dict(sorted(Counter(r.modality for r in records).items())),
        "outfits": {str(k): v for k, v in sorted(Counter(r.clothes_id for r in records).items())},
        "hidden_share": {name: hidden[name] / len(records) for name in ATTRIBUTE_NAMES if hidden[name]},
    }


def qa_stats(records: Sequence[Record]) -> dict[str, Any]:
    """Q&A bank size per record, share of each question type, share of yes/no answers that are "Yes"."""
    qas = [qa for r in records for qa in r.qas]
    yes_no = [qa for qa in qas if qa.qtype == "yes_no"]
    return {
        "per_record": _summary([len(r.qas) for r in records]),
        "type_shares": {t: sum(qa.qtype == t for qa in qas) / max(1, len(qas)) for t in QA_TYPES},
        "yes_no_positive_share": sum(qa.answer.startswith("Yes,") for qa in yes_no) / max(1, len(yes_no)),
    }


def build_world(
    out_dir: Path | str,
    *,
    ids_train: int,
    ids_val: int,
    ids_test: int,
    images_per_id: int,
    seed: int,
    image_size: tuple[int, int] = (128, 64),
    shard_size: int = DEFAULTS["shard_size"],
    resume: bool = False,
    progress: bool = True,
    options: WorldOptions = WorldOptions(),
    workers: int | None = None,
) -> dict[str, Any]:
    """Render and write the world as `train/val/test` shards in `out_dir`, plus `stats.json`; returns the stats.

    With `resume=True` samples already in finished shards are skipped (not re-rendered); since every
    image derives from seeds alone, the shards come out byte-identical to an uninterrupted run, and byte-identical
    whatever the number of rendering processes (`workers`; default: one per available core).
    """
    if images_per_id < 1:
        raise ValueError(f"images_per_id must be at least 1, got {images_per_id}")
    if min(image_size) < 16:
        raise ValueError(f"image_size (height, width) must be at least 16x16, got {image_size}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    identities = plan_identities(seed, ids_train, ids_val, ids_test, options.outfits_per_id)
    plans = [(identity, views(seed, identity.index, images_per_id, options)) for identity in identities]
    writer = DatasetWriter(out_dir, max_samples=shard_size, resume=resume)
    records, jobs = [], []
    annotate = options.annotate_visibility
    for identity, shots in plans:
        for view in shots:
            records.append(
                make_record(identity, view.image, view.camid, seed, outfit=view.outfit, annotate_visibility=annotate)
            )
            jobs.append(
                (identity.outfits[view.outfit], seed, identity.index, view.image, view.camid, image_size, view.outfit)
            )
    todo = [i for i, record in enumerate(records) if not writer.is_written(record)]
    pictures = (jobs[i] for i in todo)
    bar = tqdm(
        total=len(records), initial=len(records) - len(todo), desc="synthetic world", unit="img", disable=not progress
    )
    with bar, render_pool(len(todo), workers) as pool:
        for i, jpeg in zip(todo, pool.map(_render_jpeg, pictures, chunksize=RENDER_CHUNK), strict=True):
            writer.write(records[i], jpeg)
            bar.update()
    rendered = len(todo)
    counts = writer.close()
    seconds = time.perf_counter() - start
    people = None
    if options.annotate_visibility:  # records then hold only what each image shows: compare with the truth
        people = {
            (i.orig_pid, k): outfit for i in identities if i.split == "test" for k, outfit in enumerate(i.outfits)
        }
    stats = {
        "config": {
            "seed": seed,
            "ids_train": ids_train,
            "ids_val": ids_val,
            "ids_test": ids_test,
            "images_per_id": images_per_id,
            "image_size": list(image_size),
            "shard_size": shard_size,
        }
        | options.config(),
        "splits": {
            split: {"identities": sum(i.split == split for i in identities), "images": counts[split]}
            for split in SPLITS
            if split in counts
        },
        "ambiguity": ambiguity_stats(records, "test", people),
        "qa": qa_stats(records),
        "rendered_images": rendered,
        "seconds": seconds,
        "images_per_second": rendered / seconds if rendered else None,
    }
    if options.annotate_visibility:
        stats["views"] = view_stats(records)
    atomic_write_json(out_dir / STATS_FILE, stats)
    return stats
