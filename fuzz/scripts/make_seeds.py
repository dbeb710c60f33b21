#!/usr/bin/env python3
"""Writes the wire targets' seed corpora (backend_framer, replication, capture, frontend,
values, values_binary) from the bytes recorded by capture_pg.py / capture_basebackup.py in
/tmp/wire-cap. Run from /tmp/wire-cap. The pgoutput seeds come from
crates/walstream-proto/tests/golden/fuzz_seeds.py.
"""
import struct, os, pickle, hashlib
OUT=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'corpus')
def w(target, name, data):
    d=os.path.join(OUT,target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d,name),'wb').write(data)
def msgs(b):
    i=0; out=[]
    while i<len(b):
        n=struct.unpack('!I',b[i+1:i+5])[0]; out.append(b[i:i+1+n]); i+=1+n
    return out
def msg(tag, body): return tag + struct.pack('!I', len(body)+4) + body
# backend_framer: split byte + real server streams
for f in ['startup','select','error','empty','identify','copyboth','stream']:
    data=open(f+'.bin','rb').read()
    w('backend_framer', 'pg15-'+f, bytes([len(data)//2 % 256])+data)
auth=[msg(b'R',struct.pack('!i',0)), msg(b'R',struct.pack('!i',3)), msg(b'R',struct.pack('!i',5)+b'\x01\x02\x03\x04'),
      msg(b'R',struct.pack('!i',10)+b'SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0'), msg(b'R',struct.pack('!i',11)+b'r=abc,s=c2FsdA==,i=4096'),
      msg(b'R',struct.pack('!i',12)+b'v=c2ln'), msg(b'K',struct.pack('!i',42)+b'\xaa'*32),
      msg(b'v',struct.pack('!ii',0,1)+b'_pq_.x\0'), msg(b'N',b'SNOTICE\0VNOTICE\0C00000\0Mhello\0\0'),
      msg(b'H',b'\x01\x00\x02\x00\x01\x00\x01'), msg(b't',b'\x00\x01\x00\x00\x00\x17'), msg(b'A',struct.pack('!i',7)+b'chan\0payload\0'),
      msg(b'1',b''), msg(b'2',b''), msg(b'3',b''), msg(b'n',b''), msg(b's',b''), msg(b'c',b''), msg(b'Z',b'T')]
w('backend_framer','handcrafted-all-kinds', b'\x05'+b''.join(auth))
# replication payloads
stream=open('stream.bin','rb').read()
payloads=[m[5:] for m in msgs(stream)]
for i,p in enumerate(payloads): w('replication','pg15-%d-%s'%(i,chr(p[0])), p)
w('replication','standby-status-update', b'r'+struct.pack('!QQQqB',0x16B374D848,0x16B374D848,0,700000000000000,1))
w('replication','hot-standby-feedback', b'h'+struct.pack('!qIIII',1,0x300,1,0,0))
bb=pickle.load(open('bb.pkl','rb'))
for k,v in bb.items(): w('replication','pg15-basebackup-'+chr(k[0]), v)
# capture: replication capture and pgoutput capture from real bytes
cap=b''.join(struct.pack('!I',len(p))+p for p in payloads)
w('capture','pg15-replication', cap)
inner=[p[25:] for p in payloads if p[:1]==b'w']
w('capture','pg15-pgoutput-from-xlogdata', b''.join(struct.pack('!I',len(p))+p for p in inner))
# pg_logical_slot_get_binary_changes output (bytea text '\x..')
rows=[m for m in msgs(open('binary_changes.bin','rb').read()) if m[:1]==b'D']
pg=[]
for r in rows:
    n=struct.unpack('!i', r[7:11])[0]; val=r[11:11+n]
    assert val.startswith(b'\\x'); pg.append(bytes.fromhex(val[2:].decode()))
w('capture','pg15-binary-changes', b''.join(struct.pack('!I',len(p))+p for p in pg))
print(len(pg), [p[:1] for p in pg])
# frontend: mode byte + packets
def startup(ver, params):
    body=struct.pack('!I',ver)+b''.join(k+b'\0'+v+b'\0' for k,v in params)+b'\0'
    return struct.pack('!I',len(body)+4)+body
w('frontend','startup-3.0', b'\x00'+startup(0x30000,[(b'user',b'postgres'),(b'database',b'postgres'),(b'replication',b'database')]))
w('frontend','startup-3.2', b'\x00'+startup(0x30002,[(b'user',b'u'),(b'_pq_.x',b'1')]))
w('frontend','ssl-request', b'\x00'+struct.pack('!II',8,80877103))
w('frontend','gssenc-request', b'\x00'+struct.pack('!II',8,80877104))
w('frontend','cancel-3.2', b'\x00'+struct.pack('!IIi',12+32,80877102,99)+b'\x11'*32)
w('frontend','query-copy', b'\x00'+msg(b'Q',b'START_REPLICATION SLOT s LOGICAL 0/0\0')+msg(b'd',b'r'+b'\0'*33)+msg(b'c',b'')+msg(b'f',b'oops\0')+msg(b'S',b'')+msg(b'H',b'')+msg(b'X',b''))
w('frontend','password', b'\x00'+msg(b'p',b'md5abcdef\0'))
w('frontend','sasl-initial', b'\x01'+msg(b'p',b'SCRAM-SHA-256\0'+struct.pack('!i',11)+b'n,,n=,r=abc'))
w('frontend','sasl-response', b'\x02'+msg(b'p',b'c=biws,r=abc,p=xyz'))
# values: 2-byte index + value
for i,(idx,val) in enumerate([(0,b't'),(1,b'123'),(2,b'-32768'),(3,b'2147483647'),(5,b'3.14'),(8,b'hello'),(10,b'2024-01-01 00:00:00+00'),(12,b'{1,2,3}'),(20,b'[1,2)')]):
    w('values','seed-%d'%i, struct.pack('!H',idx)+val)
for i,(idx,val) in enumerate([(0,b'\x01'),(1,b'\x00\x00\x00\x7b'),(2,b'\x80\x00'),(3,b'\x00\x00\x00\x00\x00\x00\x00\x01'),(8,b'hello')]):
    w('values_binary','seed-%d'%i, struct.pack('!H',idx)+val)
# capture: the head (20 frames) of a golden pgoutput capture
golden=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'crates', 'walstream-proto', 'tests', 'golden', 'pgoutput-v1-text.bin')
data=open(golden,'rb').read(); i=0; out=b''
for _ in range(20):
    l=struct.unpack('>I',data[i:i+4])[0]; out+=data[i:i+4+l]; i+=4+l
w('capture','golden-pgoutput-v1-text-head', out)
