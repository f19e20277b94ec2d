"""avgen-app: a Gradio page for every generation task (needs the `app` extra: pip install -e '.[app]').

core.py does the work without Gradio (checks, uploads, generation, the files a result shows); ui.py is the page;
cli.py serves it. Run `avgen-app --help` or `python -m avgen.app`.
"""
