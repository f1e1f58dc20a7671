// A hash worker that dies at once (a broken install): streams on it must fail, not pass unhashed.
throw new Error('hash worker broken on purpose (test)');
