from tests.factories import call_params, parse_voice, sms_params, sms_replies, twilio_post


def test_incoming_call_opens_with_the_emergency_advice_then_the_menu(client):
    response = twilio_post(client, "/twilio/voice", call_params())
    assert response.status_code == 200
    step = parse_voice(response.get_data(as_text=True))
    assert "call 9 9 9" in step.says[1]
    assert step.says[2].startswith("For overdose safety, press 1")
    assert step.gather is not None and step.gather.attrib["input"] == "dtmf speech"


def test_safe_keyword_by_text_gets_the_tolerance_message(client):
    response = twilio_post(client, "/twilio/sms", sms_params("safe!"))
    (reply,) = sms_replies(response.get_data(as_text=True))
    assert reply.startswith("After any break")
