"""Serve the Gradio UIs for the browser tests, in a process of their own.

python -m tests.browser.serve_ui launch <stream> <port>
    stream.ui.launch(), as a user would from a shell with Django set up
python -m tests.browser.serve_ui mount <port> <stream> [<stream> ...]
    the test project's ASGI application with mount_gradio_ui(), under uvicorn
"""

import os
import sys

import django
from django.core.management import call_command

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.browser.settings_standalone")
django.setup()

call_command("migrate", verbosity=0)
command, args = sys.argv[1], sys.argv[2:]
if command == "launch":
    from django_rtcstream.registry import get_stream

    get_stream(args[0]).ui.launch(server_port=int(args[1]))
else:
    import uvicorn

    from tests.browser.asgi import build_application

    application = build_application(gradio_streams=args[1:])
    uvicorn.run(
        application,
        host="127.0.0.1",
        port=int(args[0]),
        log_level="warning",
        lifespan="on",
        ws="websockets-sansio",
    )
