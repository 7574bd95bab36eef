"""Turn-taking: ReplyOnPause, ReplyOnStopWords and their voice activity detection."""
