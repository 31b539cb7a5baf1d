"""Which gallery image a visual witness remembers, and the queries skipped before an evaluation starts."""

from __future__ import annotations

from ireid.core.images import ImageStore
from ireid.interactive.witness_views import NO_OTHER_IMAGE, UNDECODABLE, witness_views
from tests.helpers import jpeg, make_record


def test_another_image_of_the_person_is_chosen_never_the_querys_own() -> None:
    query = make_record(0, camid=0)
    same_camera = make_record(1, pid=0, camid=0)
    other_camera = make_record(2, pid=0, camid=1)
    other_outfit = make_record(3, pid=0, camid=2, clothes_id=1)
    infrared = make_record(4, pid=0, camid=2, modality="infrared")
    stranger = make_record(5, pid=7)
    gallery = [query, same_camera, other_camera, other_outfit, infrared, stranger]
    colours = {r.key: (i * 40, 0, 0) for i, r in enumerate(gallery)}
    store = ImageStore({key: jpeg(colour) for key, colour in colours.items()})
    views = witness_views([query], gallery, store)
    assert views.skipped == {}
    # the same outfit and modality first, then another camera: `other_camera`
    assert views.memory(query).getpixel((8, 16))[0] == store.load([other_camera.key])[0].getpixel((8, 16))[0]
    # without it, the same camera beats another outfit or modality
    views = witness_views([query], [query, same_camera, other_outfit, infrared], store)
    assert views.memory(query).getpixel((8, 16)) == store.load([same_camera.key])[0].getpixel((8, 16))


def test_queries_without_a_usable_image_are_skipped_and_counted() -> None:
    alone, broken, fine = make_record(0, pid=0), make_record(2, pid=1), make_record(4, pid=2)
    broken_view, fine_view = make_record(3, pid=1), make_record(5, pid=2)
    store = ImageStore({alone.key: jpeg(), broken.key: jpeg(), broken_view.key: b"not an image",
                        fine.key: jpeg(), fine_view.key: jpeg()})  # fmt: skip
    views = witness_views([alone, broken, fine], [alone, broken, broken_view, fine, fine_view], store)
    assert set(views.chosen) == {fine.key}
    assert views.skipped == {NO_OTHER_IMAGE: [alone.key], UNDECODABLE: [broken.key]}
    assert views.summary() == (f"1 skipped, {NO_OTHER_IMAGE} (first: {alone.key}); "
                               f"1 skipped, {UNDECODABLE} (first: {broken.key})")  # fmt: skip
