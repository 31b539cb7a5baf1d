"""LLaVA-ReID's candidate selector: a Transformer over dialogue and candidates, Gumbel-top-k sampling."""
