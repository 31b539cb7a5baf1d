"""The generated default data set: pedestrians drawn from attributes, with Interactive-PEDES style texts."""
