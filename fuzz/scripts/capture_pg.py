#!/usr/bin/env python3
"""Records real PostgreSQL bytes for the wire fuzz seeds and golden tests.

Needs a PostgreSQL 15+ server on 127.0.0.1:25400 with trust auth for user postgres,
wal_level=logical and a 'host replication all 127.0.0.1/32 trust' line. Writes *.bin files
into /tmp/wire-cap (startup, select, error, empty, identify, copyboth, stream, binary_changes).
"""
import socket, struct, time, sys
def startup(params):
    body = struct.pack('!I', 0x30000) + b''.join(k.encode()+b'\0'+v.encode()+b'\0' for k,v in params) + b'\0'
    return struct.pack('!I', len(body)+4) + body
def msg(tag, body): return tag + struct.pack('!I', len(body)+4) + body
def q(s): return msg(b'Q', s.encode()+b'\0')
class Conn:
    def __init__(self, params):
        self.s = socket.create_connection(('127.0.0.1', 25400)); self.buf=b''
        self.sent = startup(params); self.s.sendall(self.sent)
    def read_msgs(self, until=b'Z', limit=None):
        out=b''; msgs=[]
        while True:
            while len(self.buf) < 5 or len(self.buf) < 1+struct.unpack('!I', self.buf[1:5])[0]:
                d=self.s.recv(65536)
                if not d: return out, msgs
                self.buf+=d
            n=1+struct.unpack('!I', self.buf[1:5])[0]
            m=self.buf[:n]; self.buf=self.buf[n:]; out+=m; msgs.append(m)
            if m[:1]==until or (limit and len(msgs)>=limit): return out, msgs
    def send(self, b): self.s.sendall(b)
c=Conn([('user','postgres'),('database','postgres'),('application_name','walstream-capture')])
out,_=c.read_msgs(); open('/tmp/wire-cap/startup.bin','wb').write(out)
c.send(q("SELECT 1 AS one, NULL::text AS n, 'x'::text AS s")); out,_=c.read_msgs(); open('/tmp/wire-cap/select.bin','wb').write(out)
c.send(q("SELEC 1")); out,_=c.read_msgs(); open('/tmp/wire-cap/error.bin','wb').write(out)
c.send(q("")); out,_=c.read_msgs(); open('/tmp/wire-cap/empty.bin','wb').write(out)
for sql in ["CREATE TABLE IF NOT EXISTS t(id int primary key, v text)", "DROP PUBLICATION IF EXISTS p", "CREATE PUBLICATION p FOR TABLE t", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots", "SELECT pg_create_logical_replication_slot('s1','pgoutput')", "SELECT pg_create_logical_replication_slot('s2','pgoutput')"]:
    c.send(q(sql)); out,_=c.read_msgs(); print(sql, out[:1], b'E' in [m[:1] for m in _])
r0=None
for sql in ["INSERT INTO t VALUES (1,'a'),(2,NULL)", "UPDATE t SET v='b' WHERE id=1", "DELETE FROM t WHERE id=2", "TRUNCATE t"]:
    c.send(q(sql)); out,_=c.read_msgs()
c.send(q("SELECT data FROM pg_logical_slot_get_binary_changes('s2', NULL, NULL, 'proto_version','1','publication_names','p')")); out,msgs=c.read_msgs(); open('/tmp/wire-cap/binary_changes.bin','wb').write(out)
# replication connection
r=Conn([('user','postgres'),('database','postgres'),('replication','database')])
out,_=r.read_msgs()
r.send(q("IDENTIFY_SYSTEM")); out,_=r.read_msgs(); open('/tmp/wire-cap/identify.bin','wb').write(out)
r.send(q("START_REPLICATION SLOT s1 LOGICAL 0/0 (proto_version '1', publication_names 'p')"))
out,msgs=r.read_msgs(until=b'W'); print(msgs); open('/tmp/wire-cap/copyboth.bin','wb').write(out)
allcd=b''
deadline=time.time()+12
r.s.settimeout(1)
cds=[]
try:
    while time.time()<deadline:
        o,m=r.read_msgs(until=b'\xff', limit=1)
        if not m: break
        allcd+=o; cds+=m
        if sum(1 for x in cds if x[5:6]==b'k')>=1 and sum(1 for x in cds if x[5:6]==b'w')>=6: break
except socket.timeout: pass
open('/tmp/wire-cap/stream.bin','wb').write(allcd)
print(len(cds), [x[5:6] for x in cds])
