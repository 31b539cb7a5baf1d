"""The investigator app: a person searches a folder of person images by talking (`ireid serve`).

- `gallery.py`: the searched images (a folder, indexed once and kept up to date beside it, or a data set split);
- `session.py`: one investigation (description, questions, answers, "not them" / "this is them", export, resume);
- `server.py`: the web page and its JSON API (FastAPI, OpenAPI at /docs);
- `static/`: the page.
"""
