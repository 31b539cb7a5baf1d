"""Looking-forward supervision (LLaVA-ReID Eq. 9): the questioner's training targets, and the oracle that asks them.

`look_forward_ranks` tries every unused annotated answer of a dialogue and ranks the target with each; the best
one is the round's target. `build_targets` (the `ireid lookforward` command) writes those targets for a split;
`OracleLookForward` asks them in the interactive harness as an upper bound (it reads the target).

The training gallery is encoded once. For each training dialogue, round after round, every unused annotated
answer is appended in turn and the target's best rank is taken; the question whose answer ranks the target
best is that round's target, its answer is appended, and the next round starts. A dialogue stops when fewer
than two unused pairs remain (as the reference does) or after `max_rounds`. With `explore` > 0, that share of
rounds continues the dialogue with another tried pair, drawn at random, instead of the target's: the round's target
is still the best pair, but later rounds start from dialogues a questioner that does not know the person reaches
(the oracle's own trajectory is one no deployed questioner follows). With a `policy` (a trained questioner, as a
question strategy) every dialogue goes on with the pair the witness would answer to the policy's own question, so
the targets are the best questions from the dialogues that questioner reaches (DAgger's on-policy states, Ross et
al. 2011; LLaVA-ReID trains on the oracle's path only).

`targets="expected"` replaces the oracle as the teacher: each round's target is the bank pair about the attribute
the expected-gain rule (`ireid.core.expected_gain`) chooses with the training gallery's annotations as the
candidates' answers, and the dialogue goes on with it. That rule never reads the target, so its choices are ones a
questioner that sees the candidates can learn, and its path is one such a questioner can follow; the oracle's
choices depend on the target's own values, which the questioner never sees. It needs galleries the size of the
evaluation's (`gallery_ids`, `gallery_groups`).

One shard sample per record: `json` (per round: the dialogue so far, the target Q&A, the target's rank before
and after, the candidate keys), `dialogue.npy` ([T, D] fp16 dialogue embeddings before each round's question)
and `r{t}.npy` ([k_t, D] fp16 embeddings of round t's top k_t = ceil(budget / t) candidates). Records already
written are skipped on resume; `<split>.lookforward.json` holds the mean target rank per round.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from ireid.core.answers import clean_answer
from ireid.core.expected_gain import ExpectedGainRule
from ireid.core.gallery import Gallery
from ireid.core.metrics import target_ranks_from_scores
from ireid.core.processes import ordered_map
from ireid.core.protocols import Dialogue, TextImageRetriever, Turn
from ireid.core.records import Record
from ireid.core.rounds import QuestionStrategy, RoundContext, pool_size, retrieval_text_reader, unused_questions
from ireid.core.shards import ShardWriter, atomic_write_json, shard_paths
from ireid.core.vocabulary.parse import parse_question

MIN_UNUSED = 2
# `targets="expected"`: the rule with the training gallery's annotations, its posterior the ranking alone. Weighed by
# the dialogue's statements it asks far better, but its choices then depend on the candidates more than a questioner
# learns to read them, and the questioner trained on it asks worse (packages/questioner/README.md).
TEACHER = ExpectedGainRule(annotated=True, contradiction=1.0)
TARGETS = ("lookforward", "soft", "random", "expected")


@dataclass(frozen=True)
class LookAhead:
    """The best annotated pair for one dialogue: its index in `record.qas` and the target's rank with its answer."""

    qa_index: int
    rank: int


@torch.no_grad()
def look_forward_ranks(
    ctx: RoundContext, exclude_answers_in_text: bool = True, only: Sequence[Collection[int] | None] | None = None
) -> list[dict[int, int]]:
    """Per dialogue, the target's 1-based rank after each unused annotated answer: {qa index: rank}.

    Each candidate answer (cleaned as the retriever will read it) is appended to the dialogue and the text is
    encoded. Answers that clean to nothing, or whose text the dialogue already contains, are not tried; with
    `only`, neither are pairs outside a dialogue's collection (None: every pair). All candidates of the batch are
    encoded together; each dict lists its pairs in bank order.
    """
    texts: list[str] = []
    owners: list[tuple[int, int]] = []  # (dialogue index, qa index)
    for i, (record, dialogue) in enumerate(zip(ctx.queries, ctx.dialogues, strict=True)):
        current = ctx.text_of(dialogue)
        for j in unused_questions(record, dialogue):
            if only is not None and only[i] is not None and j not in only[i]:
                continue
            qa = record.qas[j]
            cleaned = clean_answer(qa.answer)
            if not cleaned or (exclude_answers_in_text and cleaned in current):
                continue
            texts.append(ctx.text_of(Dialogue(dialogue.initial, [*dialogue.turns, Turn(qa.question, qa.answer)])))
            owners.append((i, j))
    tried: list[dict[int, int]] = [{} for _ in ctx.queries]
    if not texts:
        return tried
    pids = torch.tensor([ctx.queries[i].pid for i, _ in owners], dtype=torch.long)
    for (i, j), rank in zip(owners, _ranks_in_chunks(ctx, texts, pids).tolist(), strict=True):
        tried[i][j] = rank
    return tried


def look_forward(ctx: RoundContext, exclude_answers_in_text: bool = True) -> list[LookAhead | None]:
    """One-step looking-forward (LLaVA-ReID Eq. 9): the pair whose answer ranks the target best (earliest on ties).

    None where no candidate is left.
    """
    return [
        LookAhead(*min(ranks.items(), key=lambda item: item[1])) if ranks else None
        for ranks in look_forward_ranks(ctx, exclude_answers_in_text)
    ]


def _ranks_in_chunks(ctx: RoundContext, texts: Sequence[str], pids: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    parts = []
    for start in range(0, len(texts), chunk):
        scores = ctx.gallery.scores(ctx.retriever.encode_text(texts[start : start + chunk]))
        parts.append(target_ranks_from_scores(scores, pids[start : start + chunk], ctx.gallery.pids))
    return torch.cat(parts)


class OracleLookForward:
    """Asks the annotated question whose answer most improves the target's rank: an upper bound (uses the target)."""

    name = "oracle-lookforward"
    uses_ground_truth = True

    def ask(self, ctx: RoundContext) -> list[str | None]:
        return [
            None if choice is None else record.qas[choice.qa_index].question
            for record, choice in zip(ctx.queries, look_forward(ctx), strict=True)
        ]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@torch.no_grad()
def look_forward_batch(
    records: Sequence[Record],
    gallery: Gallery,
    retriever: TextImageRetriever,
    max_rounds: int,
    budget: int = 200,
    targets: str = "lookforward",
    seed: int = 0,
    explore: float = 0.0,
    policy: QuestionStrategy | None = None,
) -> list[dict[str, Any]]:
    """Targets for a batch of records: per record its rounds and the arrays to store with them.

    `targets="random"` takes a random pair among those looking-forward tries instead of the best one: the
    "random" question-target row of LLaVA-ReID Table 3. `targets="soft"` draws a tried pair with probability
    proportional to 1 / the target's rank after its answer, so a questioner trained on many rounds learns how
    useful each question is, rather than how often it is the single best. `targets="expected"` takes the pair
    about the attribute the annotated expected-gain rule asks (module docstring). `explore` is the share of rounds whose
    dialogue goes on with a random tried pair rather than the target (module docstring). With `policy` each dialogue
    goes on with the tried pair about the attribute of the policy's question (`answered_pair`).
    """
    if targets not in TARGETS:
        raise ValueError(f"unknown targets {targets!r}; expected one of {', '.join(TARGETS)}")
    if not 0.0 <= explore <= 1.0:
        raise ValueError(f"explore must be within [0, 1], got {explore}")
    if explore and policy is not None:
        raise ValueError("explore and policy both choose how dialogues go on: give one")
    text_of = retrieval_text_reader()
    records = list(records)
    dialogues = [Dialogue(r.initial_description) for r in records]
    pids = torch.tensor([r.pid for r in records], dtype=torch.long)
    rounds: list[list[dict[str, Any]]] = [[] for _ in records]
    arrays: list[dict[str, np.ndarray]] = [{} for _ in records]
    embeddings: list[list[np.ndarray]] = [[] for _ in records]
    active = [i for i, r in enumerate(records) if len(r.qas) >= MIN_UNUSED]
    for t in range(1, max_rounds + 1):
        if not active:
            break
        embedded = retriever.encode_text([text_of(dialogues[i]) for i in active])
        scores = gallery.scores(embedded)
        before = target_ranks_from_scores(scores, pids[active], gallery.pids)
        ctx = RoundContext(
            t, [records[i] for i in active], [dialogues[i] for i in active], scores, gallery, retriever, text_of
        )
        top = torch.topk(scores, min(pool_size(t, budget), len(gallery)), dim=1).indices
        asked_by_policy = policy.ask(ctx) if policy is not None else None
        taught = TEACHER.choose(ctx) if targets == "expected" else None
        if taught is not None and not explore and policy is None:  # every other pair is tried only if needed
            tried = _taught_ranks(ctx, taught)
        else:
            tried = look_forward_ranks(ctx)
        still = []
        for row, (i, ranks) in enumerate(zip(active, tried, strict=True)):
            if not ranks:
                continue
            rng = random.Random(f"{seed}:{records[i].key}:{t}")
            if taught is not None:  # the teacher's attribute; its best pair if the bank has several, else look-forward
                ranks = pairs_about(records[i], ranks, taught[row]) or ranks
            choice = _choose(ranks, targets, rng)
            qa = records[i].qas[choice.qa_index]
            rounds[i].append(
                {
                    "round": t,
                    "dialogue": [{"question": turn.question, "answer": turn.answer} for turn in dialogues[i].turns],
                    "question": qa.question,
                    "answer": qa.answer,
                    "rank_before": int(before[row]),
                    "rank_after": choice.rank,
                    "candidates": [gallery.keys[j] for j in top[row].tolist()],
                }
            )
            arrays[i][f"r{t}.npy"] = gallery.embeddings[top[row]].numpy().astype(np.float16)
            embeddings[i].append(embedded[row].numpy().astype(np.float16))
            asked = qa
            if asked_by_policy is not None:
                asked = records[i].qas[answered_pair(records[i], asked_by_policy[row], ranks, rng)]
            elif explore and rng.random() < explore:
                asked = records[i].qas[rng.choice(list(ranks))]
            dialogues[i].ask(asked.question, asked.answer)
            if len(records[i].qas) - len(dialogues[i].turns) >= MIN_UNUSED:
                still.append(i)
        active = still
    return [
        {"key": r.key, "rounds": rounds[i], "dialogue": np.stack(embeddings[i]) if embeddings[i] else None, **arrays[i]}
        for i, r in enumerate(records)
    ]


def _taught_ranks(ctx: RoundContext, taught: Sequence[str | None]) -> list[dict[int, int]]:
    """`look_forward_ranks` as the expected targets read it: a dialogue whose bank can answer about the teacher's
    attribute needs only those pairs' ranks (about a tenth of the texts); the others need every pair's."""
    about = [
        set(pairs_about(record, dict.fromkeys(unused_questions(record, dialogue), 0), attribute)) or None
        for record, dialogue, attribute in zip(ctx.queries, ctx.dialogues, taught, strict=True)
    ]
    tried = look_forward_ranks(ctx, only=about)
    rest = [None if pairs is not None and not ranks else set() for pairs, ranks in zip(about, tried, strict=True)]
    if any(pairs is None for pairs in rest):  # the teacher's pairs were all excluded: look forward over every pair
        for row, ranks in enumerate(look_forward_ranks(ctx, only=rest)):
            tried[row] = tried[row] or ranks
    return tried


def pairs_about(record: Record, tried: dict[int, int], attribute: str | None) -> dict[int, int]:
    """The tried pairs of `record` whose bank question asks about `attribute` (`parse_question`), with their ranks."""
    if attribute is None:
        return {}
    about = {}
    for index, rank in tried.items():
        bank = parse_question(record.qas[index].question)
        if bank is not None and bank.attribute == attribute:
            about[index] = rank
    return about


def answered_pair(record: Record, question: str | None, tried: dict[int, int], rng: random.Random) -> int:
    """The tried pair of `record` a witness's answer to `question` amounts to: the bank pair about the attribute the
    question asks (`parse_question`); a random tried pair when no tried pair asks about it (a question the bank
    cannot answer, one about a covered attribute, or none)."""
    parsed = parse_question(question) if question else None
    about = pairs_about(record, tried, parsed.attribute if parsed is not None else None)
    return next(iter(about)) if about else rng.choice(list(tried))


def _choose(ranks: dict[int, int], targets: str, rng: random.Random) -> LookAhead:
    """One pair among `ranks` by the `targets` rule (\"expected\" has narrowed `ranks` to its attribute already)."""
    if targets == "random":
        index = rng.choice(list(ranks))
        return LookAhead(index, ranks[index])
    if targets == "soft":  # drawn with probability ∝ 1 / rank: how useful a pair is, not only whether it is the best
        (index,) = rng.choices(list(ranks), weights=[1.0 / rank for rank in ranks.values()])
        return LookAhead(index, ranks[index])
    return LookAhead(*min(ranks.items(), key=lambda item: item[1]))


def _members(target: dict[str, Any], record: Record) -> dict[str, bytes]:
    meta = {"key": record.key, "pid": record.pid, "initial": record.initial_description, "rounds": target["rounds"]}
    members = {"json": json.dumps(meta, sort_keys=True).encode()}
    if target["dialogue"] is not None:
        members["dialogue.npy"] = _npy(target["dialogue"])
    members.update(
        {name: _npy(array) for name, array in target.items() if name.endswith(".npy") and name != "dialogue"}
    )
    return members


def summarise(out: Path, split: str) -> dict[str, Any]:
    """Mean target rank before and after each round's target question, over every record written."""
    by_round: dict[int, list[tuple[int, int]]] = {}
    for meta, _ in iter_targets(out, split, arrays=False):
        for r in meta["rounds"]:
            by_round.setdefault(r["round"], []).append((r["rank_before"], r["rank_after"]))
    return {
        str(t): {
            "dialogues": len(pairs),
            "mean_rank_before": float(np.mean([b for b, _ in pairs])),
            "mean_rank_after": float(np.mean([a for _, a in pairs])),
        }
        for t, pairs in sorted(by_round.items())
    }


def iter_targets(out: Path, split: str, arrays: bool = True):
    """(meta, arrays) per written record; arrays by member name ("dialogue.npy", "r1.npy", ...), or none read
    (`arrays=False`: the counts and summaries need only the metadata, not the embeddings beside it)."""
    for path in shard_paths(out, split):
        with tarfile.open(path) as tar:
            members: dict[str, dict[str, bytes]] = {}
            for member in tar.getmembers():
                key, _, extension = member.name.partition(".")
                if arrays or extension == "json":
                    members.setdefault(key, {})[extension] = tar.extractfile(member).read()  # type: ignore[union-attr]
        for parts in members.values():
            meta = json.loads(parts.pop("json"))
            yield meta, {name: np.load(io.BytesIO(data), allow_pickle=False) for name, data in parts.items()}


def target_attribute_counts(out: Path, split: str = "train") -> dict[int, dict[str, int]]:
    """Per round, how often each attribute was the target question's (`parse_question`): the counts the
    `target-frequency` strategy asks by. Targets the vocabulary does not read are left out."""
    counts: dict[int, dict[str, int]] = {}
    for meta, _ in iter_targets(out, split, arrays=False):
        for r in meta["rounds"]:
            parsed = parse_question(r["question"])
            if parsed is not None:
                per_round = counts.setdefault(int(r["round"]), {})
                per_round[parsed.attribute] = per_round.get(parsed.attribute, 0) + 1
    if not counts:
        raise ValueError(f"{out}: no look-forward target of split {split!r} reads as an attribute question")
    return counts


def selector_tensors(out: Path, split: str) -> dict[str, torch.Tensor]:
    """One selector training row per (record, round): dialogue embedding, candidates in rank order, padding mask.

    The layout of `ireid.selector`'s data files, so the selector warms up on the retriever's own rankings.
    """
    rows = [(arrays["dialogue.npy"][i], arrays[f"r{r['round']}.npy"]) for meta, arrays in iter_targets(out, split)
            for i, r in enumerate(meta["rounds"])]  # fmt: skip
    if not rows:
        raise ValueError(f"{out}: no look-forward rounds in split {split!r}")
    width = max(len(candidates) for _, candidates in rows)
    dim = rows[0][0].shape[0]
    dialogue = torch.zeros(len(rows), dim)
    candidates = torch.zeros(len(rows), width, dim)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, (state, pool) in enumerate(rows):
        dialogue[i] = torch.from_numpy(state.astype(np.float32))
        candidates[i, : len(pool)] = torch.from_numpy(pool.astype(np.float32))
        mask[i, : len(pool)] = True
    return {"dialogue": dialogue, "candidates": candidates, "mask": mask}


def _check_settings(out: Path, split: str, settings: dict[str, Any]) -> None:
    """A folder is resumed only with the settings it was started with: mixed targets would train on both."""
    path = out / f"{split}.settings.json"
    if path.exists():
        written = json.loads(path.read_text())
        if written != settings:
            raise ValueError(f"{path}: targets were built with {written}, not {settings}; use another --out")
    else:
        atomic_write_json(path, settings)


def gallery_groups(gallery: Gallery, records: Sequence[Record], ids: int | None) -> list[tuple[Gallery, list[Record]]]:
    """The gallery cut into galleries of `ids` identities each (in id order), each with the records of its people;
    the whole gallery and every record when `ids` is None. Targets against a gallery the size of the evaluation's
    come from the states a questioner meets there: on the whole training gallery the target sits about 2,000th of
    8,000 at round 1, and no candidate-reading teacher can tell anything from the top 200."""
    if ids is None:
        return [(gallery, list(records))]
    if ids < 1:
        raise ValueError(f"gallery_ids must be at least 1, got {ids}")
    pids = gallery.pids.tolist()
    people = sorted(set(pids))
    groups = []
    for start in range(0, len(people), ids):
        group = set(people[start : start + ids])
        members = [r for r in records if r.pid in group]
        if members:
            groups.append((gallery.subset([j for j, pid in enumerate(pids) if pid in group]), members))
    return groups


@dataclass
class _Job:
    """Everything a look-forward batch needs; forked processes inherit it instead of receiving it per batch."""

    work: list[tuple[Gallery, list[Record]]]
    retriever: TextImageRetriever
    max_rounds: int
    budget: int
    targets: str
    seed: int
    explore: float
    policy: QuestionStrategy | None

    def __call__(self, index: int) -> tuple[int, list[Any]]:
        group, batch = self.work[index]
        chosen = look_forward_batch(
            batch, group, self.retriever, self.max_rounds, self.budget, self.targets, self.seed, self.explore,
            self.policy,
        )  # fmt: skip
        return index, chosen


def build_targets(
    retriever: TextImageRetriever,
    gallery: Gallery,
    records: Sequence[Record],
    out: Path,
    split: str = "train",
    max_rounds: int = 10,
    batch_size: int = 64,
    budget: int = 200,
    shard_size: int = 1000,
    targets: str = "lookforward",
    seed: int = 0,
    explore: float = 0.0,
    policy: QuestionStrategy | None = None,
    gallery_ids: int | None = None,
    processes: int = 1,
) -> dict[str, Any]:
    """Write the look-forward targets of `records` against `gallery` (resuming), then the per-round summary.

    With `gallery_ids` each record is looked forward against the gallery of its group of that many identities
    (`gallery_groups`) instead of the whole split. `processes` > 1 shares the batches among forked processes of one
    thread each; they are written in order, so the output is the same as one process's with one thread.
    """
    settings: dict[str, Any] = {"targets": targets, "seed": seed, "budget": budget, "max_rounds": max_rounds}
    if explore:
        settings["explore"] = explore  # absent when 0, so folders written before the option still resume
    if policy is not None:
        settings["policy"] = policy.name
    if gallery_ids is not None:
        settings["gallery_ids"] = gallery_ids
    groups = gallery_groups(gallery, records, gallery_ids)  # a bad size fails before the settings are written
    _check_settings(Path(out), split, settings)
    with ShardWriter(out, split, max_samples=shard_size, resume=True) as writer:
        work = []
        for group, members in groups:
            todo = [r for r in members if r.key not in writer.written_keys]
            work += [(group, todo[start : start + batch_size]) for start in range(0, len(todo), batch_size)]
        job = _Job(work, retriever, max_rounds, budget, targets, seed, explore, policy)
        for index, chosen in tqdm(
            ordered_map(job, range(len(work)), processes), total=len(work), desc="look forward", unit="batch"
        ):
            for record, target in zip(work[index][1], chosen, strict=True):
                writer.write_sample(record.key, _members(target, record))
    summary = {"split": split, "records": len(records), **settings, "rounds": summarise(out, split)}
    atomic_write_json(out / f"{split}.lookforward.json", summary)
    return summary
