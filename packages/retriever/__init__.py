"""CLIP dual-encoder retriever trained with IRRA losses, gallery index, RDA augmentation."""
