"""The Gradio chat page: `build_app(agent)` / `launch(...)`; started by `fewrec chat`."""
