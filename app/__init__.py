"""The Gradio front end (arrives with the web UI issue); holds no method logic."""
