from ireid.retriever.ablation_cli import COLUMNS, table


def test_table_marks_views_an_older_result_does_not_have():
    new = {c: 10.0 for c in COLUMNS} | {"steps": 100, "train_seconds": 60.0}
    old = {c: 20.0 for c in COLUMNS if not c.startswith("partial/")} | {"steps": 100, "train_seconds": 120.0}
    lines = table({"new": new, "old": old}).splitlines()
    assert lines[2] == "| new | " + " | ".join(["10.0"] * len(COLUMNS)) + " | 100 | 1.0 |"
    assert lines[3].endswith("| 20.0 | – | – | 100 | 2.0 |")
