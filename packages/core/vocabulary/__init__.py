"""The pedestrian attribute vocabulary, its sentence templates and its parser, shared by every component."""
