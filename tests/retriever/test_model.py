import pytest
import torch

from ireid.core.factory import build_model
from ireid.core.person_vision import resize_vision_positions
from ireid.core.tokenizer import train_bpe_tokenizer
from ireid.retriever.model import ClipFeatures, resize_text_positions


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    tok = train_bpe_tokenizer(
        ["a woman in a red top", "a man with a blue bag"] * 5, tmp_path_factory.mktemp("tok"), 300
    )
    return build_model("clip", tokenizer=tok).model


def test_text_positions_interpolate_linearly(clip):
    table = clip.text_model.embeddings.position_embedding.weight
    old = table.shape[0]
    with torch.no_grad():
        table.copy_(torch.linspace(0, 1, old)[:, None].expand_as(table))  # a linear ramp stays a linear ramp
    resize_text_positions(clip, 2 * old)
    new = clip.text_model.embeddings.position_embedding.weight[:, 0]
    assert new.shape == (2 * old,)
    steps = new[2:-2].diff()
    assert torch.allclose(steps, steps.mean().expand_as(steps), atol=1e-5)
    assert clip.config.text_config.max_position_embeddings == 2 * old
    ids = torch.randint(3, 100, (2, 2 * old - 1))
    out = clip.text_model(input_ids=ids, attention_mask=torch.ones_like(ids))
    assert out.last_hidden_state.shape[1] == 2 * old - 1


def test_vision_grid_becomes_person_shaped(clip):
    emb = clip.vision_model.embeddings
    side = int((emb.position_embedding.weight.shape[0] - 1) ** 0.5)
    with torch.no_grad():  # position value = row index, so bilinear resizing keeps rows ordered
        rows = torch.arange(side, dtype=torch.float).repeat_interleave(side)
        emb.position_embedding.weight[1:, 0] = rows
        emb.position_embedding.weight[0, 0] = -7.0
    resize_vision_positions(clip, (128, 64))
    table = clip.vision_model.embeddings.position_embedding.weight[:, 0]
    patch = clip.vision_model.embeddings.patch_size
    grid_h, grid_w = 128 // patch, 64 // patch
    assert table.shape[0] == 1 + grid_h * grid_w
    assert table[0] == -7.0, "the class position is kept"
    grid = table[1:].reshape(grid_h, grid_w)
    assert torch.allclose(grid[:, 0], grid[:, -1]) and (grid[1:, 0] > grid[:-1, 0]).all()
    feats = ClipFeatures(clip)
    tokens = feats.image_tokens(torch.randn(2, 3, 128, 64))
    assert tokens.shape == (2, 1 + grid_h * grid_w, clip.config.projection_dim)
    assert torch.allclose(feats.encode_images(torch.randn(2, 3, 128, 64)).norm(dim=-1), torch.ones(2))
    crops = torch.randn(2, 3, 128, 64)
    assert torch.allclose(feats.image_pooled(crops), feats.image_tokens(crops)[:, 0], atol=1e-6)
    with pytest.raises(ValueError, match="expected images of"):
        feats.image_tokens(torch.randn(1, 3, 64, 64))


def test_length_buckets_encode_as_one_padded_batch(clip):
    """`text_pooled` cuts each length bucket to its longest text: features and gradients match one padded batch."""
    feats = ClipFeatures(clip)
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([3, 17, 5, 9, 2, 12, 7, 17, 4])
    width = int(lengths.max())
    ids = torch.randint(3, 100, (len(lengths), width), generator=generator)
    mask = (torch.arange(width) < lengths[:, None]).long()
    ids = ids * mask  # right padding with id 0
    ids[torch.arange(len(lengths)), lengths - 1] = clip.config.text_config.eos_token_id  # EOT ends each text

    def pooled_and_grads(encode):
        clip.zero_grad()
        out = encode()
        out.pow(2).sum().backward()
        return out.detach(), [p.grad.clone() for p in clip.text_model.parameters() if p.grad is not None]

    whole, whole_grads = pooled_and_grads(lambda: feats.text_tokens(ids, mask)[1])
    bucketed, bucket_grads = pooled_and_grads(lambda: feats.text_pooled(ids, mask, chunk=2))
    assert torch.allclose(bucketed, whole, atol=1e-5)
    assert len(bucket_grads) == len(whole_grads)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(bucket_grads, whole_grads, strict=True))
    # left padding cannot be cut from the right: the batch is encoded whole, with the same result
    left_ids, left_mask = ids.flip(1), mask.flip(1)
    assert torch.equal(feats.text_pooled(left_ids, left_mask, chunk=2), feats.text_tokens(left_ids, left_mask)[1])
