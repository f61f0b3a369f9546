"""musicgan web app (Gradio). UI only: every handler calls the musicgan library."""
import os

import gradio as gr

import musicgan


def build() -> gr.Blocks:
    with gr.Blocks(title="musicgan") as demo:
        gr.Markdown(f"# musicgan {musicgan.__version__}\nLearn from your MIDI files with a recurrent GAN.")
    return demo


if __name__ == "__main__":
    build().launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                   server_port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
