from ireid.core.prompts import read_prompt


def test_prompt_files_load_without_their_citation_line() -> None:
    witness = read_prompt("ireid.answerer", "witness.txt")
    chatir = read_prompt("ireid.interactive", "chatir.txt")
    assert witness.startswith("Imagine you are a witness") and "<context>" in witness and "<question>" in witness
    assert not chatir.startswith("#") and "{examples}" in chatir and chatir.endswith("Next question:")
