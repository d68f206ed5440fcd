# Produces the X-Twilio-Signature test vectors of dialtone-voice's signature tests
# with Twilio's own validator (pip install twilio==9.13.0).
from twilio.request_validator import RequestValidator
import twilio
print("twilio", twilio.__version__)
token = "12345"
v = RequestValidator(token)
url = "https://mycompany.com/myapp.php?foo=1&bar=2"
params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234", "From": "+12349013030", "To": "+18005551212"}
print("doc", v.compute_signature(url, params))
params2 = {"Body": "héllo wörld €", "Empty": "", "a": "1", "B": "2", "_x": "y z&="}
print("unicode", v.compute_signature("https://example.com/voice", params2))
print("get", v.compute_signature("https://example.com/voice?CallSid=CA1&From=%2B1555", {}))
print("with443", v.compute_signature("https://example.com:443/voice", params))
print("without", v.compute_signature("https://example.com/voice", params))
print("8443", v.compute_signature("https://example.com:8443/voice", params))
print("http80", v.compute_signature("http://example.com:80/voice", params))
sig_no_port = v.compute_signature("https://example.com/voice", params)
print("validate 443 vs noport", v.validate("https://example.com:443/voice", params, sig_no_port))
sig_8443 = v.compute_signature("https://example.com:8443/voice", params)
print("validate noport vs 8443-sig", v.validate("https://example.com/voice", params, sig_8443))
print("validate 8443 vs stripped-sig", v.validate("https://example.com:8443/voice", params, sig_no_port))
print("validate 8443 vs 8443-sig", v.validate("https://example.com:8443/voice", params, sig_8443))
class MD(dict):
    def getall(self, k): return dict.__getitem__(self, k)
md = MD({"Tag": ["b", "a", "b"], "X": ["1"]})
print("multi", v.compute_signature("https://example.com/voice", md))
body = '{"property": "value", "boolean": true}'
h = v.compute_hash(body)
print("bodyhash", h)
jurl = "https://example.com/json?bodySHA256=" + h
print("jsonsig", v.compute_signature(jurl, {}))
print("validate json", v.validate(jurl, body, v.compute_signature(jurl, {})))
print("validate json tampered", v.validate(jurl, body + " ", v.compute_signature(jurl, {})))
print("userinfo", v.compute_signature("https://user:pass@example.com/voice", params))
print("validate userinfo 443", v.validate("https://user:pass@example.com:443/voice", params, v.compute_signature("https://user:pass@example.com/voice", params)))
print("validate upper host", v.validate("https://EXAMPLE.com/voice", params, v.compute_signature("https://example.com:443/voice", params)))
