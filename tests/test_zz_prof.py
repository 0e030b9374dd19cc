import asyncio, time
from tests.helpers import sign_up_and_login
from tests.tunnel_helpers import bus_of, node_status

async def test_prof(live_server, live_client):
    bus = bus_of(live_server.app)
    accs = [await sign_up_and_login(live_client) for _ in range(5)]
    t = time.monotonic()
    async def em(n):
        for i in range(40):
            await bus.emit(node_status(accs[n%5].id, "x", i))
    await asyncio.gather(*(em(n) for n in range(17)))
    print("emit", time.monotonic()-t)
    t = time.monotonic()
    async def http(n):
        a = accs[n%5]
        for i in range(40):
            r = await live_client.post("/api/v1/projects", json={"name": "p"}, headers=a.headers)
    await asyncio.gather(*(http(n) for n in range(17)))
    print("http", time.monotonic()-t)
