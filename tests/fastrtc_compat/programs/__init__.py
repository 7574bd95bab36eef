"""FastRTC programs, written from FastRTC's documentation, with only the import changed.

Each module is what a FastRTC user would write (``from fastrtc import ...``
becomes ``from django_rtcstream import ...``; ``fastrtc.utils`` becomes
``django_rtcstream.utils``) and defines a module-level ``stream``. Model
calls are replaced by small stand-ins. They import nothing else from the
package: ``test_imports.py`` checks it.
"""
