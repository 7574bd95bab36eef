"""A ReplyOnPause stream for the tests that load a project in a subprocess."""

from django_rtcstream import ReplyOnPause, Stream


def echo(audio):
    yield audio


voice = Stream(ReplyOnPause(echo), modality="audio", mode="send-receive")
