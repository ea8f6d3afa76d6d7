"""The fixtures of the answers to our questions, shared by the follow-up and check-in tests: an
SMS app on a real server (``sms``) and a Twilio voice line with the real worker (``line``)."""

from tests.bot.conversation.test_follow_up_answers import line, sms

__all__ = ["line", "sms"]
