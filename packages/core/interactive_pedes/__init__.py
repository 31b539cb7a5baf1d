"""LLaVA-ReID's Interactive-PEDES construction (§3.2, Fig. 2; prompts of Tables 5-8 in `prompts/`).

`construction.py` turns records with images into records in the Interactive-PEDES format: an initial description,
a fine description, sub-captions and a dialogue of Q&A pairs. `ireid data build-interactive` (in `ireid.app`) runs it
over a converted data set.
"""
