"""Instruction conversations of one stage with their images, encoded and batched for the ChatReID module.

Conversations come from the `stage{N}` shards of a conversation folder; their images, by record key, from the
image data set (held as encoded bytes, decoded per conversation). A stable share of conversations (by sample key)
is held out for validation. The processor belongs to the model: `setup` takes the trainer's module's processor
unless one was assigned, and encoding (template, image processing, labels) runs in the DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import lightning as L
import torch
from transformers import ProcessorMixin

from ireid.chatreid.conversations import Conversation, ConversationDataset, HoldoutFilter, conversation_shards
from ireid.chatreid.encoding import EncodedConversation, collate, encode_conversation
from ireid.chatreid.image_sizes import SizeRule
from ireid.chatreid.stages import check_stage
from ireid.core.images import ImageStore
from ireid.core.loader import SkipCounter


class ConversationEncoder:
    """Conversation → model inputs: its images by key, resized by the stage's rule, then `encode_conversation`."""

    def __init__(
        self, processor: ProcessorMixin, images: ImageStore, size_rule: SizeRule, max_length: int | None = None
    ):
        self.processor = processor
        self.images = images
        self.size_rule = size_rule
        self.max_length = max_length

    def __call__(self, conversation: Conversation) -> EncodedConversation:
        images = [self.size_rule(image) for image in self.images.load(conversation.images)]
        return encode_conversation(self.processor, conversation.messages, images, self.max_length)


class ConversationData(L.LightningDataModule):
    """Args:
    conversations_dir: folder of `stage{N}-*.tar` conversation shards.
    data_dir: the image data set the conversations' image keys refer to.
    stage: which shards to read (1, 2 or 3).
    image_splits: splits of `data_dir` whose images are loaded.
    min_image_size, max_image_size: the stage's size rule (stage 1: min 256×128; stage 2: max 384×192;
        stage 3: neither), as (height, width).
    max_length: conversations longer than this many tokens are skipped and counted.
    val_fraction: share of conversations (by key) held out for validation; 0 disables validation.
    samples_per_epoch: per process; makes every DDP process take the same number of steps.
    """

    def __init__(
        self,
        conversations_dir: str,
        data_dir: str,
        stage: int,
        image_splits: Sequence[str] = ("train",),
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
        seed: int = 0,
        min_image_size: tuple[int, int] | None = None,
        max_image_size: tuple[int, int] | None = None,
        max_length: int | None = None,
        val_fraction: float = 0.05,
        samples_per_epoch: int | None = None,
    ):
        super().__init__()
        check_stage(stage)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        self.save_hyperparameters()
        self.size_rule = SizeRule(
            tuple(min_image_size) if min_image_size else None, tuple(max_image_size) if max_image_size else None
        )
        self.processor: ProcessorMixin | None = None
        self.skips = SkipCounter()
        self.images: ImageStore | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.processor is None:
            module = getattr(self.trainer, "lightning_module", None) if self.trainer else None
            self.processor = getattr(module, "processor", None)
        if self.processor is None:
            raise ValueError("ConversationData needs the model's processor: assign data.processor or use a trainer")
        if self.images is None:
            self.images = ImageStore.from_shards(self.hparams.data_dir, self.hparams.image_splits)
        self.urls = [str(p) for p in conversation_shards(self.hparams.conversations_dir, self.hparams.stage)]

    def _dataset(self, train: bool) -> ConversationDataset:
        hp = self.hparams
        assert self.processor is not None and self.images is not None, "call setup() first"
        encoder = ConversationEncoder(self.processor, self.images, self.size_rule, hp.max_length)
        return ConversationDataset(
            self.urls,
            keep_key=HoldoutFilter(hp.val_fraction, held_out=not train),
            encode=encoder,
            shuffle=train,
            shuffle_buffer=hp.shuffle_buffer,
            seed=hp.seed,
            samples_per_epoch=hp.samples_per_epoch if train else None,
            skip_counter=self.skips,
        )

    def _loader(self, train: bool) -> torch.utils.data.DataLoader:
        hp = self.hparams
        assert self.processor is not None
        return torch.utils.data.DataLoader(
            self._dataset(train),
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            num_workers=hp.num_workers,
            collate_fn=partial(collate, pad_token_id=self.processor.tokenizer.pad_token_id),
            persistent_workers=hp.num_workers > 0,
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(train=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader | list:
        return self._loader(train=False) if self.hparams.val_fraction > 0 else []
