#!/usr/bin/env python3
"""Records the CopyData payloads of one BASE_BACKUP (one per kind) into /tmp/wire-cap/bb.pkl."""
import os, socket, struct
exec(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'capture_pg.py')).read().split('c=Conn(')[0])
r=Conn([('user','postgres'),('replication','true')])
r.read_msgs()
r.send(q("BASE_BACKUP (LABEL 'walstream', PROGRESS, MANIFEST 'yes', CHECKPOINT 'fast')"))
kinds={}
seen=[]
while True:
    o,m=r.read_msgs(until=b'\xff', limit=1)
    if not m: break
    x=m[0]
    if x[:1]==b'd':
        k=x[5:6]
        seen.append(k)
        if k not in kinds or (k==b'd' and len(x)<len(kinds[k])): kinds[k]=x[5:]
    elif x[:1] in (b'E',): print(x); break
    elif x[:1]==b'Z' and b'c' in [s[:1] for s in []]: break
    if x[:1]==b'Z' and len(seen)>0: break
from collections import Counter
print(Counter(seen))
for k,v in kinds.items(): print(k, len(v), v[:80])
import pickle; pickle.dump(kinds, open('bb.pkl','wb'))
