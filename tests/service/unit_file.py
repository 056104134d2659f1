"""A systemd unit and its EnvironmentFile read the way systemd reads them, for the tests of meshgate@.service."""
import re
import shlex


def directives(text):
    """{key: [values]} of every Key=Value line (sections do not matter here: no key repeats across them)."""
    out = {}
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln or ln.startswith(("#", ";", "[")):
            continue
        k, _, v = ln.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def environment_file(path):
    """EnvironmentFile=: NAME=value lines, # and ; comments, optional quotes around the value."""
    env = {}
    with open(path) as f:
        for ln in f:
            ln = ln.strip()
            if ln and not ln.startswith(("#", ";")) and "=" in ln:
                k, _, v = ln.partition("=")
                v = v.strip()
                env[k.strip()] = " ".join(shlex.split(v)) if v[:1] in "'\"" else v
    return env


def exec_line(line, instance, env):
    """An Exec*= line as systemd expands it: %i, then a word that is $NAME split on spaces (no word when empty) and
    ${NAME} inside a word replaced as it is."""
    words = []
    for w in shlex.split(line.replace("%i", instance)):
        m = re.fullmatch(r"\$([A-Za-z_][A-Za-z0-9_]*)", w)
        if m:
            words += env.get(m.group(1), "").split()
        else:
            words.append(re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda g: env.get(g.group(1), ""), w))
    return words
