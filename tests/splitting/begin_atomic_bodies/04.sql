SELECT sign_of(1);
